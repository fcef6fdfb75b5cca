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

// MarshalJSON prints the address in the 1.x shape (no "version" field).
func (ip IPConfig) MarshalJSON() ([]byte, error) {
	j, err := ipToJSON(&ip, false)
	if err != nil {
		return nil, err
	}
	return json.Marshal(j)
}

// UnmarshalJSON parses an address in any version's list shape; a "version"
// field, if present, must match the address family.
func (ip *IPConfig) UnmarshalJSON(data []byte) error {
	var j ipJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	parsed, err := ipFromJSON(j, j.Version != "")
	if err != nil {
		return err
	}
	*ip = *parsed
	return nil
}

// MarshalJSON prints the route with CIDR dst and optional fields.
func (r Route) MarshalJSON() ([]byte, error) {
	dst, err := cidrText(r.Dst)
	if err != nil {
		return nil, fmt.Errorf("route dst: %w", err)
	}
	gw, err := ipText(r.GW)
	if err != nil {
		return nil, fmt.Errorf("route gw: %w", err)
	}
	return json.Marshal(routeJSON{Dst: dst, GW: gw, MTU: r.MTU, AdvMSS: r.AdvMSS, Priority: r.Priority, Table: r.Table, Scope: r.Scope})
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
	b, err := r.MarshalJSON()
	if err != nil {
		return fmt.Sprintf("<invalid route: %v>", err)
	}
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

// cidrText formats an address with prefix and checks that the text parses
// back (a nil IP or a non-canonical mask would print something unreadable).
func cidrText(n net.IPNet) (string, error) {
	if n.IP == nil {
		return "", fmt.Errorf("no address set")
	}
	s := n.String()
	if _, _, err := net.ParseCIDR(s); err != nil {
		return "", fmt.Errorf("address %v with mask %v cannot be written as CIDR", n.IP, n.Mask)
	}
	return s, nil
}

// ipText formats an optional address ("" for nil) and rejects malformed ones.
func ipText(ip net.IP) (string, error) {
	if ip == nil {
		return "", nil
	}
	if len(ip) != net.IPv4len && len(ip) != net.IPv6len {
		return "", fmt.Errorf("malformed IP address (%d bytes)", len(ip))
	}
	return ip.String(), nil
}

// versionFamily names the result format of a version: "020" (0.1.0, 0.2.0,
// ""), "040" (0.3.0–0.4.0), "100" (1.0.0, 1.1.0).
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

// UnmarshalJSON decodes a result of any version (see ParseResult). A result
// without cniVersion is taken to be in the version r already carries.
func (r *Result) UnmarshalJSON(data []byte) error {
	parsed, err := ParseResult(data, r.CNIVersion)
	if err != nil {
		return err
	}
	*r = *parsed
	return nil
}

// Encode converts the result to version v by the spec's rules and returns its
// JSON. The empty version means 0.1.0. Converting to 0.1.0/0.2.0 keeps the
// first IPv4 and first IPv6 address, only routes of a family that has an
// address, and only their dst and gw; it fails when there is no address
// (unless the result already is 0.1.0/0.2.0).
// A result holding a nil entry or an address that cannot be printed is an
// error, never a panic or unreadable output.
func (r *Result) Encode(v string) ([]byte, error) {
	if v == "" {
		v = Version010
	}
	fam, err := versionFamily(v)
	if err != nil {
		from := r.CNIVersion
		if from == "" {
			from = CurrentVersion
		}
		return nil, NewError(ErrIncompatibleCNIVersion, fmt.Sprintf("no converter for CNI result version %s to %s", from, v), "")
	}
	if err := r.check(); err != nil {
		return nil, err
	}
	switch fam {
	case "100":
		return r.encode100(v)
	case "040":
		return r.encode040(v)
	default:
		return r.encode020(v)
	}
}

// check rejects content no version can print.
func (r *Result) check() error {
	bad := func(format string, args ...any) error {
		return NewError(ErrInternal, "invalid CNI result", fmt.Sprintf(format, args...))
	}
	for i, intf := range r.Interfaces {
		if intf == nil {
			return bad("interfaces[%d] is null", i)
		}
	}
	for i, ip := range r.IPs {
		if ip == nil {
			return bad("ips[%d] is null", i)
		}
		if _, err := cidrText(ip.Address); err != nil {
			return bad("ips[%d] address: %v", i, err)
		}
		if _, err := ipText(ip.Gateway); err != nil {
			return bad("ips[%d] gateway: %v", i, err)
		}
	}
	for i, rt := range r.Routes {
		if rt == nil {
			return bad("routes[%d] is null", i)
		}
		if _, err := cidrText(rt.Dst); err != nil {
			return bad("routes[%d] dst: %v", i, err)
		}
		if _, err := ipText(rt.GW); err != nil {
			return bad("routes[%d] gw: %v", i, err)
		}
	}
	return nil
}

func (r *Result) encode100(v string) ([]byte, error) {
	out := result100{CNIVersion: v, Interfaces: r.Interfaces, Routes: r.Routes}
	for _, ip := range r.IPs {
		j, err := ipToJSON(ip, false)
		if err != nil {
			return nil, err
		}
		out.IPs = append(out.IPs, j)
	}
	if !r.DNS.IsEmpty() {
		d := r.DNS
		out.DNS = &d
	}
	return json.Marshal(out)
}

func (r *Result) encode040(v string) ([]byte, error) {
	out := result040{CNIVersion: v, Routes: r.Routes, DNS: r.DNS}
	for _, i := range r.Interfaces {
		out.Interfaces = append(out.Interfaces, &ifaceJSON040{Name: i.Name, Mac: i.Mac, Sandbox: i.Sandbox})
	}
	for _, ip := range r.IPs {
		j, err := ipToJSON(ip, true)
		if err != nil {
			return nil, err
		}
		out.IPs = append(out.IPs, j)
	}
	return json.Marshal(out)
}

func (r *Result) encode020(v string) ([]byte, error) {
	out := result020{CNIVersion: v, DNS: r.DNS}
	for _, ip := range r.IPs {
		slot := &out.IP6
		if ip.IsV4() {
			slot = &out.IP4
		}
		if *slot != nil {
			continue
		}
		addr, _ := cidrText(ip.Address) // checked by r.check
		gw, _ := ipText(ip.Gateway)
		*slot = &ip020{IP: addr, Gateway: gw}
	}
	// Down-converting needs an address; a 0.1.0/0.2.0 result without one is
	// printed as it is (the reference does the same: no conversion happens).
	if out.IP4 == nil && out.IP6 == nil && r.CNIVersion != Version010 && r.CNIVersion != Version020 {
		return nil, NewError(ErrIncompatibleCNIVersion, "cannot convert: no valid IP addresses", "")
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

// ConvertTo returns a copy of the result relabelled as version v, with the
// content the conversion to v keeps (so a later Encode(v) prints the same).
func (r *Result) ConvertTo(v string) (*Result, error) {
	data, err := r.Encode(v)
	if err != nil {
		return nil, err
	}
	return ParseResult(data, v)
}

// Print returns the result in version v as a plugin prints it on stdout:
// indented by four spaces, as the reference does, with a final newline.
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
