// Package static is the static IPAM plugin: it returns the addresses, routes
// and DNS settings its config names, config-compatible with the reference.
//
// Addresses come from ipam.addresses ([{"address": CIDR, "gateway": IP}]);
// CNI_ARGS IP= (a comma list of CIDRs) appends to that list and CNI_ARGS
// GATEWAY= (a comma list of IPs) sets the gateway of every address whose
// subnet contains it; then args.cni.ips and runtimeConfig.ips (the "ips"
// capability), when present, replace the whole list, in that order, as the
// reference does. ADD echoes the result, DEL has nothing to release,
// CHECK verifies that prevResult carries every address (and gateway) the
// config asks for.
package static

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"

	"github.com/knit-cni/knit/pkg/cni"
	"github.com/knit-cni/knit/pkg/cni/skel"
)

// Info describes the plugin.
var Info = skel.Info{
	Name:  "static",
	About: "knit static IPAM: addresses, routes and DNS from the config, CNI_ARGS or the ips capability",
}

// Plugin is the static plugin.
var Plugin skel.Plugin = staticIPAM{}

type staticIPAM struct{}

// Address is one configured address.
type Address struct {
	Address net.IPNet // host bits kept
	Gateway net.IP    // nil when none
	// Source says where it came from, for error messages.
	Source string
}

// Config is a static request's configuration after every override is
// applied and validated.
type Config struct {
	Name       string
	CNIVersion string
	Addresses  []Address
	Routes     []*cni.Route
	DNS        cni.DNS
}

type addressJSON struct {
	Address string `json:"address"`
	Gateway string `json:"gateway,omitempty"`
}

type confJSON struct {
	CNIVersion string `json:"cniVersion"`
	Name       string `json:"name"`
	IPAM       *struct {
		Addresses []addressJSON `json:"addresses"`
		Routes    []*cni.Route  `json:"routes"`
		DNS       cni.DNS       `json:"dns"`
	} `json:"ipam"`
	RuntimeConfig struct {
		IPs []string `json:"ips"`
	} `json:"runtimeConfig"`
	Args struct {
		CNI struct {
			IPs []string `json:"ips"`
		} `json:"cni"`
	} `json:"args"`
}

func invalid(format string, args ...any) *cni.Error {
	return cni.Errorf(cni.ErrInvalidNetworkConfig, format, args...)
}

// LoadConfig parses stdin config and CNI_ARGS and applies the overrides.
// Errors are code 7 (4 for malformed CNI_ARGS) and name the bad value.
func LoadConfig(data []byte, envArgs string) (*Config, error) {
	var c confJSON
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, cni.NewError(cni.ErrDecodingFailure, "cannot decode the network config", err.Error())
	}
	if c.IPAM == nil {
		return nil, invalid(`missing "ipam": static reads its addresses from the config's ipam section`)
	}
	cfg := &Config{Name: c.Name, CNIVersion: c.CNIVersion, Routes: c.IPAM.Routes, DNS: c.IPAM.DNS}
	if cfg.CNIVersion == "" {
		cfg.CNIVersion = cni.Version010
	}
	for i, r := range cfg.Routes {
		if r == nil || r.Dst.IP == nil {
			return nil, invalid(`ipam.routes[%d]: every route needs a "dst"`, i)
		}
	}

	for i, a := range c.IPAM.Addresses {
		addr, err := parseAddress(fmt.Sprintf("ipam.addresses[%d]", i), a.Address, a.Gateway)
		if err != nil {
			return nil, err
		}
		cfg.Addresses = append(cfg.Addresses, addr)
	}
	if envArgs != "" {
		args, err := cni.LoadArgs(envArgs, "IP", "GATEWAY")
		if err != nil {
			return nil, err
		}
		if v, ok := args.Get("IP"); ok && v != "" {
			for _, s := range strings.Split(v, ",") {
				addr, err := parseAddress("CNI_ARGS IP=", strings.TrimSpace(s), "")
				if err != nil {
					return nil, err
				}
				cfg.Addresses = append(cfg.Addresses, addr)
			}
		}
		if v, ok := args.Get("GATEWAY"); ok && v != "" {
			for _, s := range strings.Split(v, ",") {
				gw := parseIP(strings.TrimSpace(s))
				if gw == nil {
					return nil, invalid("CNI_ARGS GATEWAY=: %q is not an IP address", s)
				}
				matched := false
				for i := range cfg.Addresses {
					if cfg.Addresses[i].Address.Contains(gw) {
						cfg.Addresses[i].Gateway = gw
						matched = true
					}
				}
				if !matched {
					return nil, invalid("CNI_ARGS GATEWAY=: %s is in none of the addresses' subnets (%s)", gw, cfg.describe())
				}
			}
		}
	}

	replace := func(src string, ips []string) error {
		if len(ips) == 0 {
			return nil
		}
		cfg.Addresses = nil
		for i, s := range ips {
			addr, err := parseAddress(fmt.Sprintf("%s[%d]", src, i), s, "")
			if err != nil {
				return err
			}
			cfg.Addresses = append(cfg.Addresses, addr)
		}
		return nil
	}
	if err := replace("args.cni.ips", c.Args.CNI.IPs); err != nil {
		return nil, err
	}
	if err := replace("runtimeConfig.ips", c.RuntimeConfig.IPs); err != nil {
		return nil, err
	}
	var v4, v6 int
	seen := map[string]string{}
	for _, a := range cfg.Addresses {
		if prev, dup := seen[a.Address.IP.String()]; dup {
			return nil, invalid("%s: address %s is already given by %s", a.Source, a.Address.IP, prev)
		}
		seen[a.Address.IP.String()] = a.Source
		if a.Address.IP.To4() != nil {
			v4++
		} else {
			v6++
		}
	}
	if (v4 > 1 || v6 > 1) && !cni.VersionAtLeast(cfg.CNIVersion, cni.Version030) {
		return nil, invalid("cniVersion %s does not support more than one address per IP family (%d IPv4, %d IPv6): use 0.3.0 or later",
			cfg.CNIVersion, v4, v6)
	}
	return cfg, nil
}

func parseIP(s string) net.IP {
	ip := net.ParseIP(s)
	if v4 := ip.To4(); v4 != nil {
		return v4
	}
	return ip
}

func parseAddress(src, address, gateway string) (Address, error) {
	if strings.TrimSpace(address) == "" {
		return Address{}, invalid(`%s: an address must be given as "IP/prefix"`, src)
	}
	n, err := cni.ParseCIDR(strings.TrimSpace(address))
	if err != nil {
		return Address{}, invalid("%s: %q is not an address with prefix length (like 10.1.2.3/24): %v", src, address, err)
	}
	a := Address{Address: *n, Source: src}
	if gateway != "" {
		if a.Gateway = parseIP(strings.TrimSpace(gateway)); a.Gateway == nil {
			return Address{}, invalid("%s: gateway %q is not an IP address", src, gateway)
		}
		if (a.Gateway.To4() == nil) != (n.IP.To4() == nil) {
			return Address{}, invalid("%s: gateway %s and address %s are of different IP families", src, a.Gateway, address)
		}
	}
	return a, nil
}

func (cfg *Config) describe() string {
	parts := make([]string, len(cfg.Addresses))
	for i, a := range cfg.Addresses {
		parts[i] = a.Address.String()
	}
	if len(parts) == 0 {
		return "no addresses"
	}
	return strings.Join(parts, ", ")
}

// Result is the result ADD returns for cfg.
func (cfg *Config) Result() *cni.Result {
	res := &cni.Result{CNIVersion: cfg.CNIVersion, Routes: cfg.Routes, DNS: cfg.DNS}
	for _, a := range cfg.Addresses {
		res.IPs = append(res.IPs, &cni.IPConfig{Address: a.Address, Gateway: a.Gateway})
	}
	return res
}

// Add returns the configured addresses.
func (staticIPAM) Add(_ context.Context, req *skel.Request) (*cni.Result, error) {
	cfg, err := LoadConfig(req.Config, req.Args)
	if err != nil {
		return nil, err
	}
	if len(cfg.Addresses) == 0 {
		return nil, invalid("static: no addresses for container %s: set ipam.addresses, the ips capability, args.cni.ips or CNI_ARGS IP=", req.ContainerID)
	}
	return cfg.Result(), nil
}

// Del has nothing to release; it only needs a config it can read.
func (staticIPAM) Del(_ context.Context, req *skel.Request) error {
	var c confJSON
	if err := json.Unmarshal(req.Config, &c); err != nil {
		return cni.NewError(cni.ErrDecodingFailure, "cannot decode the network config", err.Error())
	}
	return nil
}

// Check verifies that prevResult holds every configured address with its
// prefix length, and the configured gateway where one is set.
func (staticIPAM) Check(_ context.Context, req *skel.Request) error {
	cfg, err := LoadConfig(req.Config, req.Args)
	if err != nil {
		return err
	}
	if req.PrevResult == nil {
		return invalid("static: CHECK needs the attachment's prevResult to compare the addresses with")
	}
	for _, want := range cfg.Addresses {
		var found *cni.IPConfig
		for _, ip := range req.PrevResult.IPs {
			if ip.Address.IP.Equal(want.Address.IP) {
				found = ip
				break
			}
		}
		if found == nil {
			return cni.Errorf(cni.ErrUnknownContainer, "static: address %s (%s) is missing from the result of container %s interface %s",
				want.Address.String(), want.Source, req.ContainerID, req.IfName)
		}
		if found.Address.String() != want.Address.String() {
			return cni.Errorf(cni.ErrUnknownContainer, "static: the result has %s where the config says %s (%s)",
				found.Address.String(), want.Address.String(), want.Source)
		}
		if want.Gateway != nil && !want.Gateway.Equal(found.Gateway) {
			return cni.Errorf(cni.ErrUnknownContainer, "static: address %s has gateway %v in the result, the config says %s",
				want.Address.String(), found.Gateway, want.Gateway)
		}
	}
	return nil
}
