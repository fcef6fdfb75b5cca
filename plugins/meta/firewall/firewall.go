// Package firewall is the firewall meta plugin with an nftables backend
// (internal/nft Firewall, over netlink): it lets the container's traffic
// through the host's forward path (established/related toward the
// container, anything from it) and, with ingressPolicy "same-bridge",
// isolates the container's bridge from the other isolated bridges. Every
// container entry is tagged with its owner, so DEL, CHECK and GC find it.
//
// The reference's keys keep their meaning where they can: backend
// "iptables" (or "nftables", or unset) selects knit's nftables backend;
// "firewalld" is refused (knit does not speak D-Bus); iptablesAdminChainName
// and firewalldZone are accepted and ignored (logged). nftables semantics
// differ from the reference's FORWARD insertion: see internal/nft's
// firewall.go on coexisting with Docker and other tables.
package firewall

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"

	"github.com/knit-cni/knit/internal/ipcfg"
	"github.com/knit-cni/knit/internal/nft"
	"github.com/knit-cni/knit/pkg/cni"
	"github.com/knit-cni/knit/pkg/cni/skel"
	"github.com/vishvananda/netlink"
)

// Plugin implements skel.Plugin and skel.GCer.
type Plugin struct{}

// Info describes the plugin; like the reference it needs spec 0.4.0 or later.
var Info = skel.Info{
	Name:     "firewall",
	About:    "knit firewall plugin: forward-path allow and bridge isolation over nftables netlink",
	Versions: []string{cni.Version040, cni.Version100, cni.Version110},
}

var (
	_ skel.Plugin = Plugin{}
	_ skel.GCer   = Plugin{}
)

// Ingress policies.
const (
	PolicyOpen       = "open"
	PolicySameBridge = "same-bridge"
)

// Config is the firewall plugin's configuration.
type Config struct {
	cni.NetConf
	Backend                string `json:"backend,omitempty"`
	IptablesAdminChainName string `json:"iptablesAdminChainName,omitempty"`
	FirewalldZone          string `json:"firewalldZone,omitempty"`
	IngressPolicy          string `json:"ingressPolicy,omitempty"`
}

func parseConfig(stdin []byte) (*Config, error) {
	c := &Config{}
	if err := json.Unmarshal(stdin, c); err != nil {
		return nil, cni.NewError(cni.ErrDecodingFailure, "failed to parse firewall network configuration", err.Error())
	}
	switch c.Backend {
	case "", "iptables", "nftables":
	case "firewalld":
		return nil, cni.NewError(cni.ErrUnsupportedField, `backend "firewalld" is not supported by knit`,
			`knit manages nftables over netlink: use backend "iptables" or "nftables", or leave it out`)
	default:
		return nil, cni.NewError(cni.ErrInvalidNetworkConfig, fmt.Sprintf("unknown firewall backend %q", c.Backend),
			`use "iptables" or "nftables" (both select knit's nftables backend)`)
	}
	switch c.IngressPolicy {
	case "", PolicyOpen, PolicySameBridge:
	case "isolated":
		return nil, cni.NewError(cni.ErrUnsupportedField, `ingressPolicy "isolated" is not supported by knit`,
			`use "open" or "same-bridge"`)
	default:
		return nil, cni.NewError(cni.ErrInvalidNetworkConfig, fmt.Sprintf("invalid ingressPolicy %q", c.IngressPolicy),
			`use "open" (the default) or "same-bridge"`)
	}
	return c, nil
}

func owner(req *skel.Request) nft.Owner {
	return nft.Owner{Network: req.NetConf.Name, ContainerID: req.ContainerID, IfName: req.IfName}
}

func (c *Config) noteIgnored() {
	if c.IptablesAdminChainName != "" {
		slog.Info("firewall: iptablesAdminChainName has no nftables equivalent here; add admin rules in your own table", "iptablesAdminChainName", c.IptablesAdminChainName)
	}
	if c.FirewalldZone != "" {
		slog.Info("firewall: firewalldZone ignored (no firewalld backend)", "firewalldZone", c.FirewalldZone)
	}
}

// bridgeName finds the bridge among prevResult's host-side interfaces.
func bridgeName(prev *cni.Result) (string, error) {
	for _, ifc := range prev.Interfaces {
		if ifc.Sandbox != "" {
			continue
		}
		l, err := netlink.LinkByName(ifc.Name)
		if err != nil {
			continue
		}
		if _, ok := l.(*netlink.Bridge); ok {
			return ifc.Name, nil
		}
	}
	return "", cni.NewError(cni.ErrInvalidNetworkConfig, `ingressPolicy "same-bridge" needs a bridge in prevResult`,
		"chain the firewall after the bridge plugin, or use ingressPolicy \"open\"")
}

// isolation returns the bridge to isolate ("" for the open policy).
func (c *Config) isolation(prev *cni.Result) (string, error) {
	if c.IngressPolicy != PolicySameBridge {
		return "", nil
	}
	return bridgeName(prev)
}

func addrsOf(req *skel.Request) []net.IPNet { return ipcfg.ContainerAddrs(req.PrevResult, req.IfName) }

// Add allows the container's addresses and passes prevResult through.
func (Plugin) Add(ctx context.Context, req *skel.Request) (*cni.Result, error) {
	conf, err := parseConfig(req.Config)
	if err != nil {
		return nil, err
	}
	if req.PrevResult == nil {
		return nil, cni.NewError(cni.ErrInvalidNetworkConfig, "firewall must be called as a chained plugin",
			"put it after a plugin that gives the container addresses (e.g. bridge) in a conflist")
	}
	conf.noteIgnored()
	bridge, err := conf.isolation(req.PrevResult)
	if err != nil {
		return nil, err
	}
	if err := nft.NewFirewall().Add(owner(req), addrsOf(req), bridge); err != nil {
		return nil, err
	}
	return req.PrevResult, nil
}

// Del removes the container's entries (found by owner when prevResult is
// missing). A bridge stays isolated until GC finds its network unused.
func (Plugin) Del(ctx context.Context, req *skel.Request) error {
	if _, err := parseConfig(req.Config); err != nil {
		return err
	}
	return nft.NewFirewall().Del(owner(req), addrsOf(req))
}

// Check verifies the container's entries and its bridge's isolation.
func (Plugin) Check(ctx context.Context, req *skel.Request) error {
	conf, err := parseConfig(req.Config)
	if err != nil {
		return err
	}
	if req.PrevResult == nil {
		return cni.NewError(cni.ErrInvalidNetworkConfig, "required prevResult missing",
			"CHECK needs the ADD result as prevResult; the runtime supplies it from its cache")
	}
	bridge, err := conf.isolation(req.PrevResult)
	if err != nil {
		return err
	}
	return nft.NewFirewall().Check(owner(req), addrsOf(req), bridge)
}

// GC removes the entries of attachments not in cni.dev/valid-attachments.
func (Plugin) GC(ctx context.Context, req *skel.Request) error {
	if _, err := parseConfig(req.Config); err != nil {
		return err
	}
	var keep []nft.Owner
	for _, a := range req.NetConf.Attachments() {
		keep = append(keep, nft.Owner{Network: req.NetConf.Name, ContainerID: a.ContainerID, IfName: a.IfName})
	}
	return nft.NewFirewall().GC(req.NetConf.Name, keep)
}
