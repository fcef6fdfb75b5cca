// Package ipvlan is the ipvlan plugin: the container gets an ipvlan child
// (mode l2, l3 or l3s) of a master interface, created directly in the
// container's namespace under a temporary name and renamed there. It shares
// the master's MAC address. The master defaults to the interface of the
// host's default route or, chained after another plugin, to the single
// interface of prevResult; without ipam, chained use takes the addresses
// from prevResult. Keys as the reference plugin: master, mode, mtu,
// linkInContainer.
package ipvlan

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/knit-cni/knit/pkg/cni"
	"github.com/knit-cni/knit/pkg/cni/skel"
	"github.com/knit-cni/knit/plugins/main/internal/onelink"
	"github.com/vishvananda/netlink"
)

// Plugin implements skel.Plugin, skel.GCer and skel.Statuser.
type Plugin struct{}

// Info describes the plugin for VERSION and the about banner.
var Info = skel.Info{Name: "ipvlan", About: "knit ipvlan plugin: an ipvlan child of a host interface, config-compatible with the reference"}

var (
	_ skel.Plugin   = Plugin{}
	_ skel.GCer     = Plugin{}
	_ skel.Statuser = Plugin{}
)

// Config is the ipvlan plugin's configuration, key for key the reference's.
type Config struct {
	cni.NetConf
	Master          string `json:"master"`
	Mode            string `json:"mode"`
	MTU             int    `json:"mtu"`
	LinkInContainer bool   `json:"linkInContainer,omitempty"`

	mode netlink.IPVlanMode
}

var modes = map[string]netlink.IPVlanMode{
	"":    netlink.IPVLAN_MODE_L2,
	"l2":  netlink.IPVLAN_MODE_L2,
	"l3":  netlink.IPVLAN_MODE_L3,
	"l3s": netlink.IPVLAN_MODE_L3S,
}

// ModeName returns the config name of an ipvlan mode.
func ModeName(m netlink.IPVlanMode) string {
	switch m {
	case netlink.IPVLAN_MODE_L2:
		return "l2"
	case netlink.IPVLAN_MODE_L3:
		return "l3"
	case netlink.IPVLAN_MODE_L3S:
		return "l3s"
	}
	return fmt.Sprintf("mode %d", m)
}

// parseConfig decodes and validates stdin. When master is not given and
// prev (prevResult) has exactly one named interface, that is the master;
// a prevResult with several or none is an error, as in the reference.
// Without prevResult an empty master means "the default route's".
func parseConfig(stdin []byte, prev *cni.Result) (*Config, error) {
	c := &Config{}
	if err := json.Unmarshal(stdin, c); err != nil {
		return nil, cni.NewError(cni.ErrDecodingFailure, "failed to parse ipvlan network configuration", err.Error())
	}
	mode, ok := modes[c.Mode]
	if !ok {
		return nil, cni.Errorf(cni.ErrInvalidNetworkConfig, "unknown ipvlan mode: %q (use l2, l3 or l3s)", c.Mode)
	}
	c.mode = mode
	if c.MTU < 0 {
		return nil, cni.Errorf(cni.ErrInvalidNetworkConfig, "invalid MTU %d: use 0 to inherit the master's or a positive value", c.MTU)
	}
	if c.Master == "" && prev != nil {
		if len(prev.Interfaces) != 1 || prev.Interfaces[0].Name == "" {
			return nil, cni.NewError(cni.ErrInvalidNetworkConfig, "chained master failure. PrevResult lacks a single named interface",
				fmt.Sprintf(`prevResult has %d interfaces: set "master"`, len(prev.Interfaces)))
		}
		c.Master = prev.Interfaces[0].Name
	}
	if c.Master != "" {
		if err := cni.ValidateInterfaceName(c.Master); err != nil {
			return nil, cni.NewError(cni.ErrInvalidNetworkConfig, fmt.Sprintf("invalid master %q", c.Master), err.Error())
		}
	}
	return c, nil
}

// Add creates the ipvlan in the container and configures it.
func (Plugin) Add(ctx context.Context, req *skel.Request) (*cni.Result, error) {
	conf, err := parseConfig(req.Config, req.PrevResult)
	if err != nil {
		return nil, err
	}
	return onelink.AddChild(ctx, req, onelink.Child{
		Kind: "ipvlan", Policy: onelink.IPAMOrPrevResult,
		Master: conf.Master, InContainer: conf.LinkInContainer, MTU: conf.MTU,
		New: func(attrs netlink.LinkAttrs) netlink.Link { return &netlink.IPVlan{LinkAttrs: attrs, Mode: conf.mode} },
	})
}

// Del removes the ipvlan and the IPAM reservation; best effort and
// repeatable: it needs neither the master nor the namespace to exist, and
// only the common keys of the config (skel has decoded them), so a config
// ADD refused can still be deleted.
func (Plugin) Del(ctx context.Context, req *skel.Request) error {
	return onelink.Del(ctx, req)
}

// Check verifies the ipvlan (kind, mode, master when named), its addresses
// and routes against prevResult, and the IPAM plugin's CHECK.
func (Plugin) Check(ctx context.Context, req *skel.Request) error {
	// The prevResult of CHECK is this plugin's own result, so it cannot
	// name the master: only an explicit master is verified.
	conf, err := parseConfig(req.Config, nil)
	if err != nil {
		return err
	}
	return onelink.CheckChild(ctx, req, conf.Master, conf.LinkInContainer, false, func(l netlink.Link) error {
		iv, ok := l.(*netlink.IPVlan)
		if !ok {
			return onelink.CheckErr(req.IfName+" is not an ipvlan", "it is a "+l.Type())
		}
		if iv.Mode != conf.mode {
			return onelink.CheckErr(fmt.Sprintf("container ipvlan mode %s does not match expected value: %s", ModeName(iv.Mode), ModeName(conf.mode)),
				"the interface was changed after ADD; DEL and ADD the attachment again")
		}
		return nil
	})
}

// Status reports whether the IPAM plugin can serve ADD.
func (Plugin) Status(ctx context.Context, req *skel.Request) error {
	if _, err := parseConfig(req.Config, nil); err != nil {
		return err
	}
	return onelink.Status(ctx, req)
}

// GC forwards to the IPAM plugin, which releases stale reservations; like
// DEL it needs only the common keys.
func (Plugin) GC(ctx context.Context, req *skel.Request) error {
	return onelink.GC(ctx, req)
}
