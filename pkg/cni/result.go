package cni

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
)

// Result is the success result of ADD, in knit's one in-memory model that can
// hold every version's content. CNIVersion says which version it was decoded
// from or will be printed as; Encode converts by the spec's rules.
type Result struct {
	CNIVersion string       `json:"cniVersion,omitempty"`
	Interfaces []*Interface `json:"interfaces,omitempty"`
	IPs        []*IPConfig  `json:"ips,omitempty"`
	Routes     []*Route     `json:"routes,omitempty"`
	DNS        DNS          `json:"dns,omitempty"`
}

// Interface is one interface a plugin created or touched.
type Interface struct {
	Name       string `json:"name"`
	Mac        string `json:"mac,omitempty"`
	MTU        int    `json:"mtu,omitempty"`        // 1.1.0
	Sandbox    string `json:"sandbox,omitempty"`    // container interfaces: CNI_NETNS
	SocketPath string `json:"socketPath,omitempty"` // 1.1.0
	PciID      string `json:"pciID,omitempty"`      // 1.1.0
}

// IPConfig is one address assigned to an interface.
type IPConfig struct {
	// Interface is an index into Result.Interfaces; nil means "not said".
	// Index 0 is a valid value and is printed.
	Interface *int      `json:"interface,omitempty"`
	Address   net.IPNet `json:"-"`
	Gateway   net.IP    `json:"-"`
}

// Route is one route. Dst is required; the 1.1.0 fields are optional.
type Route struct {
	Dst      net.IPNet `json:"-"`
	GW       net.IP    `json:"-"`
	MTU      int       `json:"-"`
	AdvMSS   int       `json:"-"`
	Priority int       `json:"-"`
	Table    *int      `json:"-"`
	Scope    *int      `json:"-"`
}

// DNS is the dns section of a result or of a network config.
type DNS struct {
	Nameservers []string `json:"nameservers,omitempty"`
	Domain      string   `json:"domain,omitempty"`
	Search      []string `json:"search,omitempty"`
	Options     []string `json:"options,omitempty"`
}

// IsEmpty reports whether no DNS field is set.
func (d DNS) IsEmpty() bool {
	return len(d.Nameservers) == 0 && d.Domain == "" && len(d.Search) == 0 && len(d.Options) == 0
}

// Int returns a pointer to i, for the optional index/table/scope fields.
func Int(i int) *int { return &i }

// IsV4 reports whether the address is IPv4.
func (ip *IPConfig) IsV4() bool { return ip.Address.IP.To4() != nil }

// Family returns "4" or "6", the old "version" field.
func (ip *IPConfig) Family() string {
	if ip.IsV4() {
		return "4"
	}
	return "6"
}

// ---- JSON of the building blocks (shared by every version) ----

type routeJSON struct {
	Dst      string `json:"dst"`
	GW       string `json:"gw,omitempty"`
	MTU      int    `json:"mtu,omitempty"`
	AdvMSS   int    `json:"advmss,omitempty"`
	Priority int    `json:"priority,omitempty"`
	Table    *int   `json:"table,omitempty"`
	Scope    *int   `json:"scope,omitempty"`
}

// MarshalJSON prints the route with CIDR dst and optional fields.
func (r Route) MarshalJSON() ([]byte, error) {
	j := routeJSON{Dst: cidrString(r.Dst), MTU: r.MTU, AdvMSS: r.AdvMSS, Priority: r.Priority, Table: r.Table, Scope: r.Scope}
	if r.GW != nil {
		j.GW = r.GW.String()
	}
	return json.Marshal(j)
}

// UnmarshalJSON parses a route; dst must be a CIDR, gw an address.
func (r *Route) UnmarshalJSON(data []byte) error {
	var j routeJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	dst, err := ParseCIDR(j.Dst)
	if err != nil {
		return fmt.Errorf("route dst: %w", err)
	}
	var gw net.IP
	if j.GW != "" {
		if gw = net.ParseIP(j.GW); gw == nil {
			return fmt.Errorf("route gw: invalid IP address %q", j.GW)
		}
	}
	*r = Route{Dst: *dst, GW: gw, MTU: j.MTU, AdvMSS: j.AdvMSS, Priority: j.Priority, Table: j.Table, Scope: j.Scope}
	return nil
}

func (r *Route) String() string {
	b, _ := r.MarshalJSON()
	return string(b)
}

// ParseCIDR parses "addr/prefix" keeping the host part of the address
// (unlike net.ParseCIDR, which returns the network).
func ParseCIDR(s string) (*net.IPNet, error) {
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		return nil, err
	}
	if v4 := ip.To4(); v4 != nil {
		ip = v4
	}
	n.IP = ip
	return n, nil
}

func cidrString(n net.IPNet) string {
	if n.IP == nil {
		return ""
	}
	return n.String()
}

// ---- versioned encodings ----

type ipJSON struct {
	Version   string `json:"version,omitempty"` // 0.3.x/0.4.0 only
	Interface *int   `json:"interface,omitempty"`
	Address   string `json:"address"`
	Gateway   string `json:"gateway,omitempty"`
}

type ifaceJSON040 struct {
	Name    string `json:"name"`
	Mac     string `json:"mac,omitempty"`
	Sandbox string `json:"sandbox,omitempty"`
}

type result100 struct {
	CNIVersion string       `json:"cniVersion"`
	Interfaces []*Interface `json:"interfaces,omitempty"`
	IPs        []ipJSON     `json:"ips,omitempty"`
	Routes     []*Route     `json:"routes,omitempty"`
	DNS        *DNS         `json:"dns,omitempty"`
}

type result040 struct {
	CNIVersion string         `json:"cniVersion"`
	Interfaces []ifaceJSON040 `json:"interfaces,omitempty"`
	IPs        []ipJSON       `json:"ips,omitempty"`
	IP         []ipJSON       `json:"ip,omitempty"` // the 0.3.0 spec text's name, accepted on input
	Routes     []*Route       `json:"routes,omitempty"`
	DNS        DNS            `json:"dns"`
}

type ip020 struct {
	IP      string   `json:"ip"`
	Gateway string   `json:"gateway,omitempty"`
	Routes  []*Route `json:"routes,omitempty"`
}

type result020 struct {
	CNIVersion string `json:"cniVersion"`
	IP4        *ip020 `json:"ip4,omitempty"`
	IP6        *ip020 `json:"ip6,omitempty"`
	DNS        DNS    `json:"dns"`
}

// family of a version: "020" (0.1.0, 0.2.0, ""), "040" (0.3.0–0.4.0), "100" (1.0.0, 1.1.0).
func versionFamily(v string) (string, error) {
	switch v {
	case "", Version010, Version020:
		return "020", nil
	case Version030, Version031, Version040:
		return "040", nil
	case Version100, Version110:
		return "100", nil
	}
	return "", fmt.Errorf("unsupported CNI result version %q", v)
}

// SameFamily reports whether two versions share a result format.
func SameFamily(a, b string) bool {
	fa, err1 := versionFamily(a)
	fb, err2 := versionFamily(b)
	return err1 == nil && err2 == nil && fa == fb
}

// MarshalJSON prints the result in its own CNIVersion.
func (r *Result) MarshalJSON() ([]byte, error) {
	return r.Encode(r.CNIVersion)
}

// Encode converts the result to version v by the spec's rules and returns its
// JSON. Converting to 0.1.0/0.2.0 keeps the first IPv4 and first IPv6 address
// and fails when there is none.
func (r *Result) Encode(v string) ([]byte, error) {
	fam, err := versionFamily(v)
	if err != nil {
		return nil, fmt.Errorf("no converter for CNI result version %s to %s", r.CNIVersion, v)
	}
	switch fam {
	case "100":
		out := result100{CNIVersion: v, Interfaces: r.Interfaces, Routes: r.Routes}
		for _, ip := range r.IPs {
			out.IPs = append(out.IPs, ipToJSON(ip, false))
		}
		if !r.DNS.IsEmpty() {
			d := r.DNS
			out.DNS = &d
		}
		return json.Marshal(out)
	case "040":
		out := result040{CNIVersion: v, Routes: r.Routes, DNS: r.DNS}
		for _, i := range r.Interfaces {
			out.Interfaces = append(out.Interfaces, ifaceJSON040{Name: i.Name, Mac: i.Mac, Sandbox: i.Sandbox})
		}
		for _, ip := range r.IPs {
			out.IPs = append(out.IPs, ipToJSON(ip, true))
		}
		return json.Marshal(out)
	default:
		out := result020{CNIVersion: v, DNS: r.DNS}
		for _, ip := range r.IPs {
			if ip.IsV4() && out.IP4 == nil {
				out.IP4 = &ip020{IP: cidrString(ip.Address), Gateway: ipString(ip.Gateway)}
			} else if !ip.IsV4() && out.IP6 == nil {
				out.IP6 = &ip020{IP: cidrString(ip.Address), Gateway: ipString(ip.Gateway)}
			}
		}
		if out.IP4 == nil && out.IP6 == nil {
			return nil, fmt.Errorf("cannot convert: no valid IP addresses")
		}
		for _, rt := range r.Routes {
			simple := &Route{Dst: rt.Dst, GW: rt.GW}
			if rt.Dst.IP.To4() != nil {
				if out.IP4 != nil {
					out.IP4.Routes = append(out.IP4.Routes, simple)
				}
			} else if out.IP6 != nil {
				out.IP6.Routes = append(out.IP6.Routes, simple)
			}
		}
		return json.Marshal(out)
	}
}

// ConvertTo returns a copy of the result relabelled as version v, with the
// content the conversion to v keeps (so a later Encode(v) prints the same).
func (r *Result) ConvertTo(v string) (*Result, error) {
	data, err := r.Encode(v)
	if err != nil {
		return nil, err
	}
	return ParseResult(data, v)
}

// Print writes the result to stdout-like w in version v, indented as the
// reference prints it.
func (r *Result) Print(v string) ([]byte, error) {
	data, err := r.Encode(v)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, data, "", "    "); err != nil {
		return nil, err
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}

func ipToJSON(ip *IPConfig, withVersion bool) ipJSON {
	j := ipJSON{Interface: ip.Interface, Address: cidrString(ip.Address), Gateway: ipString(ip.Gateway)}
	if withVersion {
		j.Version = ip.Family()
	}
	return j
}

func ipString(ip net.IP) string {
	if ip == nil {
		return ""
	}
	return ip.String()
}

// ParseResult decodes a result of any version. A result without cniVersion
// is taken to be in defaultVersion (the request's version); "" means 0.1.0.
func ParseResult(data []byte, defaultVersion string) (*Result, error) {
	var head struct {
		CNIVersion string `json:"cniVersion"`
	}
	if err := jsonUnmarshal(data, &head); err != nil {
		return nil, fmt.Errorf("decoding result: %w", err)
	}
	v := head.CNIVersion
	if v == "" {
		v = defaultVersion
	}
	fam, err := versionFamily(v)
	if err != nil {
		return nil, err
	}
	res := &Result{CNIVersion: v}
	if v == "" {
		res.CNIVersion = Version010
	}
	switch fam {
	case "100":
		var in result100
		if err := jsonUnmarshal(data, &in); err != nil {
			return nil, fmt.Errorf("decoding %s result: %w", v, err)
		}
		res.Interfaces = in.Interfaces
		res.Routes = in.Routes
		if in.DNS != nil {
			res.DNS = *in.DNS
		}
		for _, j := range in.IPs {
			ip, err := ipFromJSON(j)
			if err != nil {
				return nil, err
			}
			res.IPs = append(res.IPs, ip)
		}
	case "040":
		var in result040
		if err := jsonUnmarshal(data, &in); err != nil {
			return nil, fmt.Errorf("decoding %s result: %w", v, err)
		}
		for _, i := range in.Interfaces {
			res.Interfaces = append(res.Interfaces, &Interface{Name: i.Name, Mac: i.Mac, Sandbox: i.Sandbox})
		}
		res.Routes = in.Routes
		res.DNS = in.DNS
		ips := in.IPs
		if len(ips) == 0 {
			ips = in.IP
		}
		for _, j := range ips {
			ip, err := ipFromJSON(j)
			if err != nil {
				return nil, err
			}
			res.IPs = append(res.IPs, ip)
		}
	default:
		var in result020
		if err := jsonUnmarshal(data, &in); err != nil {
			return nil, fmt.Errorf("decoding %s result: %w", v, err)
		}
		res.DNS = in.DNS
		for _, x := range []*ip020{in.IP4, in.IP6} {
			if x == nil {
				continue
			}
			ip, err := ipFromJSON(ipJSON{Address: x.IP, Gateway: x.Gateway})
			if err != nil {
				return nil, err
			}
			res.IPs = append(res.IPs, ip)
			res.Routes = append(res.Routes, x.Routes...)
		}
	}
	return res, nil
}

func ipFromJSON(j ipJSON) (*IPConfig, error) {
	addr, err := ParseCIDR(j.Address)
	if err != nil {
		return nil, fmt.Errorf("ip address: %w", err)
	}
	ip := &IPConfig{Interface: j.Interface, Address: *addr}
	if j.Gateway != "" {
		if ip.Gateway = net.ParseIP(j.Gateway); ip.Gateway == nil {
			return nil, fmt.Errorf("ip gateway: invalid IP address %q", j.Gateway)
		}
	}
	return ip, nil
}

// ParsePrevResult decodes a prevResult embedded in a config of version
// confVersion. It must be in the same result family as the config.
func ParsePrevResult(raw json.RawMessage, confVersion string) (*Result, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	res, err := ParseResult(raw, confVersion)
	if err != nil {
		return nil, NewError(ErrDecodingFailure, "could not parse prevResult", err.Error())
	}
	if !SameFamily(res.CNIVersion, confVersion) {
		return nil, NewError(ErrIncompatibleCNIVersion, "prevResult version does not match the config version",
			fmt.Sprintf("prevResult is %q, config is %q", res.CNIVersion, confVersion))
	}
	return res, nil
}

func jsonUnmarshal(data []byte, v any) error {
	return json.Unmarshal(data, v)
}
