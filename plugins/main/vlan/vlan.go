// Package vlan is the vlan plugin: the container gets an 802.1Q
// sub-interface (vlanId) of a master interface, created directly in the
// container's namespace under a temporary name and renamed there. Keys as
// the reference plugin: master (required), vlanId, mtu, linkInContainer;
// ipam is mandatory.
package vlan

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
var Info = skel.Info{Name: "vlan", About: "knit vlan plugin: an 802.1Q sub-interface of a host interface, config-compatible with the reference"}

var (
	_ skel.Plugin   = Plugin{}
	_ skel.GCer     = Plugin{}
	_ skel.Statuser = Plugin{}
)

// Config is the vlan plugin's configuration, key for key the reference's.
type Config struct {
	cni.NetConf
	Master          string `json:"master"`
	VlanID          int    `json:"vlanId"`
	MTU             int    `json:"mtu"`
	LinkInContainer bool   `json:"linkInContainer,omitempty"`
}

// parseConfig decodes and validates stdin.
func parseConfig(stdin []byte) (*Config, error) {
	c := &Config{}
	if err := json.Unmarshal(stdin, c); err != nil {
		return nil, cni.NewError(cni.ErrDecodingFailure, "failed to parse vlan network configuration", err.Error())
	}
	if c.Master == "" {
		return nil, cni.NewError(cni.ErrInvalidNetworkConfig, `"master" field is required. It specifies the host interface name to create the VLAN for`,
			`set "master" to the interface that carries the tagged frames`)
	}
	if err := cni.ValidateInterfaceName(c.Master); err != nil {
		return nil, cni.NewError(cni.ErrInvalidNetworkConfig, fmt.Sprintf("invalid master %q", c.Master), err.Error())
	}
	if c.VlanID < 0 || c.VlanID > 4094 {
		return nil, cni.Errorf(cni.ErrInvalidNetworkConfig, "invalid VLAN ID %d (must be between 0 and 4094 inclusive)", c.VlanID)
	}
	if c.MTU < 0 {
		return nil, cni.Errorf(cni.ErrInvalidNetworkConfig, "invalid MTU %d: use 0 to inherit the master's or a positive value", c.MTU)
	}
	return c, nil
}

// Add creates the VLAN interface in the container and configures it.
func (Plugin) Add(ctx context.Context, req *skel.Request) (*cni.Result, error) {
	conf, err := parseConfig(req.Config)
	if err != nil {
		return nil, err
	}
	return onelink.AddChild(ctx, req, onelink.Child{
		Kind: "vlan", Policy: onelink.IPAMRequired,
		Master: conf.Master, InContainer: conf.LinkInContainer, MTU: conf.MTU,
		New: func(attrs netlink.LinkAttrs) netlink.Link {
			return &netlink.Vlan{LinkAttrs: attrs, VlanId: conf.VlanID}
		},
	})
}

// Del removes the VLAN interface and the IPAM reservation; best effort and
// repeatable: it needs neither the master nor the namespace to exist, and
// only the common keys of the config (skel has decoded them), so a config
// ADD refused can still be deleted.
func (Plugin) Del(ctx context.Context, req *skel.Request) error {
	return onelink.Del(ctx, req)
}

// Check verifies the VLAN interface (kind, id, master), its MAC, addresses
// and routes against prevResult, and the IPAM plugin's CHECK.
func (Plugin) Check(ctx context.Context, req *skel.Request) error {
	conf, err := parseConfig(req.Config)
	if err != nil {
		return err
	}
	return onelink.CheckChild(ctx, req, conf.Master, conf.LinkInContainer, true, func(l netlink.Link) error {
		v, ok := l.(*netlink.Vlan)
		if !ok {
			return onelink.CheckErr(req.IfName+" is not a vlan", "it is a "+l.Type())
		}
		if v.VlanId != conf.VlanID {
			return onelink.CheckErr(fmt.Sprintf("container vlan id %d does not match expected value: %d", v.VlanId, conf.VlanID),
				"the interface was changed after ADD; DEL and ADD the attachment again")
		}
		return nil
	})
}

// Status reports whether the IPAM plugin can serve ADD.
func (Plugin) Status(ctx context.Context, req *skel.Request) error {
	if _, err := parseConfig(req.Config); err != nil {
		return err
	}
	return onelink.Status(ctx, req)
}

// GC forwards to the IPAM plugin, which releases stale reservations; like
// DEL it needs only the common keys.
func (Plugin) GC(ctx context.Context, req *skel.Request) error {
	return onelink.GC(ctx, req)
}
