package cni

import (
	"encoding/json"
	"fmt"
	"net"
)

// The JSON shapes of a result, one per version family. They are private:
// the model is Result; these only exist to print and read the wire format.

type routeJSON struct {
	Dst      string `json:"dst"`
	GW       string `json:"gw,omitempty"`
	MTU      int    `json:"mtu,omitempty"`
	AdvMSS   int    `json:"advmss,omitempty"`
	Priority int    `json:"priority,omitempty"`
	Table    *int   `json:"table,omitempty"`
	Scope    *int   `json:"scope,omitempty"`
}

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
	CNIVersion string          `json:"cniVersion"`
	Interfaces []*ifaceJSON040 `json:"interfaces,omitempty"`
	IPs        []ipJSON        `json:"ips,omitempty"`
	Routes     []*Route        `json:"routes,omitempty"`
	DNS        DNS             `json:"dns"`
}

// result030 is what a 0.3.0 result is read as: the 0.3.0 spec text called the
// address list "ip" while every implementation wrote "ips"; both are read.
type result030 struct {
	result040
	IP []ipJSON `json:"ip,omitempty"`
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

func ipToJSON(ip *IPConfig, withVersion bool) (ipJSON, error) {
	addr, err := cidrText(ip.Address)
	if err != nil {
		return ipJSON{}, fmt.Errorf("ip address: %w", err)
	}
	gw, err := ipText(ip.Gateway)
	if err != nil {
		return ipJSON{}, fmt.Errorf("ip gateway: %w", err)
	}
	j := ipJSON{Interface: ip.Interface, Address: addr, Gateway: gw}
	if withVersion {
		j.Version = ip.Family()
	}
	return j, nil
}

// ipFromJSON reads one address. With checkVersion, the 0.3.x/0.4.0 "version"
// field must be "4" or "6" and match the address; an absent one is derived.
func ipFromJSON(j ipJSON, checkVersion bool) (*IPConfig, error) {
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
	if checkVersion && j.Version != "" && j.Version != ip.Family() {
		return nil, fmt.Errorf("ip version %q does not match address %s (IPv%s)", j.Version, j.Address, ip.Family())
	}
	return ip, nil
}

// ParseResult decodes a result of any version. A result without cniVersion
// is taken to be in defaultVersion (the request's version); "" means 0.1.0.
// Errors are *Error: code 6 for content that cannot be decoded, code 1 for a
// version knit does not implement.
func ParseResult(data []byte, defaultVersion string) (*Result, error) {
	var head struct {
		CNIVersion string `json:"cniVersion"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, NewError(ErrDecodingFailure, "cannot decode CNI result", err.Error())
	}
	v := head.CNIVersion
	if v == "" {
		v = defaultVersion
	}
	if v == "" {
		v = Version010
	}
	fam, err := versionFamily(v)
	if err != nil {
		return nil, NewError(ErrIncompatibleCNIVersion, err.Error(),
			fmt.Sprintf("knit reads results of versions %v", AllVersions))
	}
	var res *Result
	switch fam {
	case "100":
		res, err = decode100(data)
	case "040":
		res, err = decode040(data, v == Version030)
	default:
		res, err = decode020(data)
	}
	if err != nil {
		return nil, NewError(ErrDecodingFailure, fmt.Sprintf("cannot decode CNI %s result", v), err.Error())
	}
	res.CNIVersion = v
	return res, nil
}

func decode100(data []byte) (*Result, error) {
	var in result100
	if err := json.Unmarshal(data, &in); err != nil {
		return nil, err
	}
	res := &Result{Interfaces: in.Interfaces, Routes: in.Routes}
	if in.DNS != nil {
		res.DNS = *in.DNS
	}
	for i, j := range in.IPs {
		ip, err := ipFromJSON(j, false)
		if err != nil {
			return nil, fmt.Errorf("ips[%d]: %w", i, err)
		}
		res.IPs = append(res.IPs, ip)
	}
	return res, noNulls(res)
}

func decode040(data []byte, is030 bool) (*Result, error) {
	var in result030
	if err := json.Unmarshal(data, &in); err != nil {
		return nil, err
	}
	res := &Result{Routes: in.Routes, DNS: in.DNS}
	for n, i := range in.Interfaces {
		if i == nil {
			return nil, fmt.Errorf("interfaces[%d] is null", n)
		}
		res.Interfaces = append(res.Interfaces, &Interface{Name: i.Name, Mac: i.Mac, Sandbox: i.Sandbox})
	}
	ips, key := in.IPs, "ips"
	if is030 && len(ips) == 0 {
		ips, key = in.IP, "ip"
	}
	for i, j := range ips {
		ip, err := ipFromJSON(j, true)
		if err != nil {
			return nil, fmt.Errorf("%s[%d]: %w", key, i, err)
		}
		res.IPs = append(res.IPs, ip)
	}
	return res, noNulls(res)
}

func decode020(data []byte) (*Result, error) {
	var in result020
	if err := json.Unmarshal(data, &in); err != nil {
		return nil, err
	}
	res := &Result{DNS: in.DNS}
	for _, x := range []struct {
		key  string
		ip   *ip020
		want string
	}{{"ip4", in.IP4, "4"}, {"ip6", in.IP6, "6"}} {
		if x.ip == nil {
			continue
		}
		ip, err := ipFromJSON(ipJSON{Address: x.ip.IP, Gateway: x.ip.Gateway}, false)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", x.key, err)
		}
		if ip.Family() != x.want {
			return nil, fmt.Errorf("%s: address %s is not IPv%s", x.key, x.ip.IP, x.want)
		}
		for i, rt := range x.ip.Routes {
			if rt == nil {
				return nil, fmt.Errorf("%s.routes[%d] is null", x.key, i)
			}
			if fam := (&IPConfig{Address: rt.Dst}).Family(); fam != x.want {
				return nil, fmt.Errorf("%s.routes[%d]: dst %s is not IPv%s", x.key, i, cidrOrEmpty(rt.Dst), x.want)
			}
		}
		res.IPs = append(res.IPs, ip)
		res.Routes = append(res.Routes, x.ip.Routes...)
	}
	return res, nil
}

func cidrOrEmpty(n net.IPNet) string {
	s, _ := cidrText(n)
	return s
}

// noNulls rejects JSON null entries in the lists, which decode to nil
// pointers that no consumer expects.
func noNulls(r *Result) error {
	for i, x := range r.Interfaces {
		if x == nil {
			return fmt.Errorf("interfaces[%d] is null", i)
		}
	}
	for i, x := range r.Routes {
		if x == nil {
			return fmt.Errorf("routes[%d] is null", i)
		}
	}
	return nil
}

// ParsePrevResult decodes a prevResult embedded in a config of version
// confVersion. A prevResult without cniVersion is in confVersion; otherwise it
// must be in the same result family as the config (code 1), as the reference
// library requires. Undecodable content is code 6.
func ParsePrevResult(raw json.RawMessage, confVersion string) (*Result, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	res, err := ParseResult(raw, confVersion)
	if err != nil {
		code := Code(err)
		if code != ErrIncompatibleCNIVersion {
			code = ErrDecodingFailure
		}
		return nil, NewError(code, "could not parse prevResult", err.Error())
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
