// Package portmap is the portmap meta plugin: it publishes container ports
// on the host (the portMappings capability) with nftables over netlink
// (internal/nft PortMap), never by running iptables or nft. Only traffic to
// the host's own addresses is redirected; hairpin and localhost
// connections are masqueraded (snat, default true; masqAll for every
// source); UDP conntrack entries of the mapped ports are flushed on ADD and
// DEL. It is chained after a plugin that returns the container's addresses
// and passes that result through.
//
// The reference's keys keep their meaning: backend "iptables" or
// "nftables" both select knit's nftables layer; markMasqBit and
// externalSetMarkChain only steer the reference's iptables marking, so they
// are validated as the reference does and otherwise ignored (logged);
// conditionsV4/V6 must be empty, since their rule text needs the nft or
// iptables binary to compile.
package portmap

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"

	"github.com/knit-cni/knit/internal/ipcfg"
	"github.com/knit-cni/knit/internal/link"
	"github.com/knit-cni/knit/internal/nft"
	"github.com/knit-cni/knit/internal/sysctl"
	"github.com/knit-cni/knit/pkg/cni"
	"github.com/knit-cni/knit/pkg/cni/skel"
)

// Plugin implements skel.Plugin and skel.GCer.
type Plugin struct{}

// Info describes the plugin for VERSION and the about banner.
var Info = skel.Info{Name: "portmap", About: "knit portmap plugin: hostPort to containerPort over nftables netlink, config-compatible with the reference"}

var (
	_ skel.Plugin = Plugin{}
	_ skel.GCer   = Plugin{}
)

// Mapping is one entry of runtimeConfig.portMappings.
type Mapping struct {
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP,omitempty"`
}

// Config is the portmap plugin's configuration.
type Config struct {
	cni.NetConf
	Backend              *string   `json:"backend,omitempty"`
	SNAT                 *bool     `json:"snat,omitempty"`
	MasqAll              bool      `json:"masqAll,omitempty"`
	MarkMasqBit          *int      `json:"markMasqBit,omitempty"`
	ExternalSetMarkChain *string   `json:"externalSetMarkChain,omitempty"`
	ConditionsV4         *[]string `json:"conditionsV4,omitempty"`
	ConditionsV6         *[]string `json:"conditionsV6,omitempty"`
	RuntimeConfig        struct {
		PortMaps []Mapping `json:"portMappings,omitempty"`
	} `json:"runtimeConfig,omitempty"`

	mappings []nft.PortMapping
	options  nft.PortMapOptions
}

func parseConfig(stdin []byte) (*Config, error) {
	c := &Config{}
	if err := json.Unmarshal(stdin, c); err != nil {
		return nil, cni.NewError(cni.ErrDecodingFailure, "failed to parse portmap network configuration", err.Error())
	}
	if c.Backend != nil && *c.Backend != "iptables" && *c.Backend != "nftables" {
		return nil, cni.NewError(cni.ErrInvalidNetworkConfig, fmt.Sprintf("invalid backend %q", *c.Backend),
			`use "nftables" or "iptables" (both select knit's nftables implementation), or leave it out`)
	}
	if c.MarkMasqBit != nil && c.ExternalSetMarkChain != nil {
		return nil, cni.NewError(cni.ErrInvalidNetworkConfig, "markMasqBit and externalSetMarkChain cannot both be set",
			"remove one of them (knit marks nothing: hairpin masquerade needs no mark)")
	}
	if c.MarkMasqBit != nil && (*c.MarkMasqBit < 0 || *c.MarkMasqBit > 31) {
		return nil, cni.Errorf(cni.ErrInvalidNetworkConfig, "invalid markMasqBit %d: it must be 0-31", *c.MarkMasqBit)
	}
	for key, conds := range map[string]*[]string{"conditionsV4": c.ConditionsV4, "conditionsV6": c.ConditionsV6} {
		if conds != nil && len(*conds) > 0 {
			return nil, cni.NewError(cni.ErrUnsupportedField, key+" is not supported by knit's portmap",
				fmt.Sprintf("%q is rule text that only the nft or iptables binary can compile and knit talks netlink only; "+
					"remove the key (only the host's own addresses are redirected anyway)", strings.Join(*conds, " ")))
		}
	}
	c.options = nft.PortMapOptions{SNAT: c.SNAT == nil || *c.SNAT, MasqAll: c.MasqAll}
	for _, m := range c.RuntimeConfig.PortMaps {
		pm, err := m.convert()
		if err != nil {
			return nil, err
		}
		c.mappings = append(c.mappings, pm)
	}
	if err := nft.ValidateMappings(c.mappings); err != nil {
		return nil, err
	}
	return c, nil
}

func (m Mapping) convert() (nft.PortMapping, error) {
	bad := func(why string) error {
		return cni.NewError(cni.ErrInvalidNetworkConfig, fmt.Sprintf("invalid port mapping %+v", m), why)
	}
	if m.HostPort < 1 || m.HostPort > 65535 {
		return nft.PortMapping{}, bad(fmt.Sprintf("hostPort %d is not a port number (1-65535)", m.HostPort))
	}
	if m.ContainerPort < 1 || m.ContainerPort > 65535 {
		return nft.PortMapping{}, bad(fmt.Sprintf("containerPort %d is not a port number (1-65535)", m.ContainerPort))
	}
	proto := strings.ToLower(m.Protocol)
	if proto == "" {
		proto = "tcp"
	}
	pm := nft.PortMapping{HostPort: uint16(m.HostPort), ContainerPort: uint16(m.ContainerPort), Protocol: proto}
	if m.HostIP != "" {
		a, err := netip.ParseAddr(m.HostIP)
		if err != nil {
			return nft.PortMapping{}, bad(fmt.Sprintf("hostIP %q is not an IP address", m.HostIP))
		}
		pm.HostIP = a.Unmap()
	}
	return pm, nil
}

func owner(req *skel.Request) nft.Owner {
	return nft.Owner{Network: req.NetConf.Name, ContainerID: req.ContainerID, IfName: req.IfName}
}

// noteIgnored logs the reference keys that have no effect here.
func (c *Config) noteIgnored() {
	if c.MarkMasqBit != nil {
		slog.Info("portmap: markMasqBit only applies to the reference's iptables marking; knit masquerades hairpin traffic without a mark", "markMasqBit", *c.MarkMasqBit)
	}
	if c.ExternalSetMarkChain != nil {
		slog.Info("portmap: externalSetMarkChain only applies to the reference's iptables marking; ignored", "externalSetMarkChain", *c.ExternalSetMarkChain)
	}
}

// containerAddrs returns the container's addresses from prevResult: those of
// CNI_IFNAME in a sandbox (all when the result names no interfaces).
func containerAddrs(req *skel.Request) []net.IPNet {
	return ipcfg.ContainerAddrs(req.PrevResult, req.IfName)
}

// Add publishes the mappings and passes prevResult through.
func (Plugin) Add(ctx context.Context, req *skel.Request) (*cni.Result, error) {
	conf, err := parseConfig(req.Config)
	if err != nil {
		return nil, err
	}
	if req.PrevResult == nil {
		return nil, cni.NewError(cni.ErrInvalidNetworkConfig, "portmap must be called as a chained plugin",
			"put it after a plugin that gives the container addresses (e.g. bridge) in a conflist")
	}
	if len(conf.mappings) == 0 {
		return req.PrevResult, nil
	}
	conf.noteIgnored()
	addrs := containerAddrs(req)
	if len(addrs) == 0 {
		return nil, cni.NewError(cni.ErrInvalidNetworkConfig, "prevResult has no address for "+req.IfName,
			"portmap needs the container's IP addresses from the plugin before it")
	}
	if conf.options.SNAT && !conf.options.MasqAll {
		if err := enableLocalnet(addrs); err != nil {
			return nil, err
		}
	}
	pm := nft.NewPortMap()
	if err := pm.Add(owner(req), addrs, conf.mappings, conf.options); err != nil {
		return nil, err
	}
	return req.PrevResult, nil
}

// enableLocalnet sets route_localnet=1 on the host interface routing to the
// container's IPv4 address, as the reference does: without it the kernel
// drops 127.0.0.1-sourced packets DNATed toward the container. The value is
// read over netlink (a /proc/sys lookup costs more the more namespaces the
// machine has) and written through /proc/sys only when it is not yet 1: the
// kernel flushes the route cache on that write, which netlink would not.
func enableLocalnet(addrs []net.IPNet) error {
	for _, a := range addrs {
		if a.IP.To4() == nil {
			continue
		}
		name, conf, err := link.IPv4ConfToward(a.IP)
		if err != nil {
			return cni.NewError(cni.ErrInternal, "cannot find the host interface toward "+a.IP.String(), err.Error())
		}
		if id, _ := link.IPv4ConfID("route_localnet"); conf[id] == 1 {
			return nil
		}
		if _, err := sysctl.Set(sysctl.IfaceKey("ipv4", "conf", name, "route_localnet"), "1"); err != nil {
			return cni.NewError(cni.ErrInternal, "cannot enable localhost access to mapped ports", err.Error())
		}
		return nil
	}
	return nil
}

// Del removes this attachment's mappings. Like the reference, a DEL
// without runtimeConfig.portMappings does nothing (GC removes what such a
// DEL could not name), and a DEL with mappings removes all the attachment
// owns even when they differ from the ADD's (see nft.PortMap.Del).
func (Plugin) Del(ctx context.Context, req *skel.Request) error {
	conf, err := parseConfig(req.Config)
	if err != nil {
		return err
	}
	if len(conf.mappings) == 0 {
		return nil
	}
	return nft.NewPortMap().Del(owner(req), containerAddrs(req), conf.mappings)
}

// Check verifies that every mapping is in place toward the container.
func (Plugin) Check(ctx context.Context, req *skel.Request) error {
	conf, err := parseConfig(req.Config)
	if err != nil {
		return err
	}
	if len(conf.mappings) == 0 {
		return nil
	}
	if req.PrevResult == nil {
		return cni.NewError(cni.ErrInvalidNetworkConfig, "required prevResult missing",
			"CHECK needs the ADD result as prevResult; the runtime supplies it from its cache")
	}
	return nft.NewPortMap().Check(owner(req), containerAddrs(req), conf.mappings, conf.options)
}

// GC removes the mappings of every attachment of this network not in
// cni.dev/valid-attachments.
func (Plugin) GC(ctx context.Context, req *skel.Request) error {
	if _, err := parseConfig(req.Config); err != nil {
		return err
	}
	var keep []nft.Owner
	for _, a := range req.NetConf.Attachments() {
		keep = append(keep, nft.Owner{Network: req.NetConf.Name, ContainerID: a.ContainerID, IfName: a.IfName})
	}
	return nft.NewPortMap().GC(req.NetConf.Name, keep)
}
