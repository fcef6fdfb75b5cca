// Package macvlan is the macvlan plugin: the container gets a macvlan child
// of a master interface (by default the interface of the host's default
// route), created directly in the container's namespace under a temporary
// name and renamed there, with its own MAC address. Modes bridge (default),
// private, vepa and passthru; mtu, mac (config, CNI_ARGS MAC= or the mac
// capability), linkInContainer and bcqueuelen, as the reference plugin.
// IPAM is optional: without it the link is only set up.
package macvlan

import (
	"context"
	"encoding/json"
	"fmt"
	"net"

	"github.com/knit-cni/knit/internal/link"
	"github.com/knit-cni/knit/internal/sysctl"
	"github.com/knit-cni/knit/pkg/cni"
	"github.com/knit-cni/knit/pkg/cni/skel"
	"github.com/knit-cni/knit/plugins/main/internal/onelink"
	"github.com/vishvananda/netlink"
)

// Plugin implements skel.Plugin, skel.GCer and skel.Statuser.
type Plugin struct{}

// Info describes the plugin for VERSION and the about banner.
var Info = skel.Info{Name: "macvlan", About: "knit macvlan plugin: a macvlan child of a host interface, config-compatible with the reference"}

var (
	_ skel.Plugin   = Plugin{}
	_ skel.GCer     = Plugin{}
	_ skel.Statuser = Plugin{}
)

// Config is the macvlan plugin's configuration, key for key the reference's.
type Config struct {
	cni.NetConf
	Master          string `json:"master"`
	Mode            string `json:"mode"`
	MTU             int    `json:"mtu"`
	Mac             string `json:"mac,omitempty"`
	LinkInContainer bool   `json:"linkInContainer,omitempty"`
	BCQueueLen      *int64 `json:"bcqueuelen,omitempty"`

	RuntimeConfig struct {
		Mac string `json:"mac,omitempty"`
	} `json:"runtimeConfig"`

	mode netlink.MacvlanMode
	mac  net.HardwareAddr
}

var modes = map[string]netlink.MacvlanMode{
	"":         netlink.MACVLAN_MODE_BRIDGE,
	"bridge":   netlink.MACVLAN_MODE_BRIDGE,
	"private":  netlink.MACVLAN_MODE_PRIVATE,
	"vepa":     netlink.MACVLAN_MODE_VEPA,
	"passthru": netlink.MACVLAN_MODE_PASSTHRU,
}

// ModeName returns the config name of a macvlan mode.
func ModeName(m netlink.MacvlanMode) string {
	switch m {
	case netlink.MACVLAN_MODE_BRIDGE:
		return "bridge"
	case netlink.MACVLAN_MODE_PRIVATE:
		return "private"
	case netlink.MACVLAN_MODE_VEPA:
		return "vepa"
	case netlink.MACVLAN_MODE_PASSTHRU:
		return "passthru"
	case netlink.MACVLAN_MODE_SOURCE:
		return "source"
	}
	return fmt.Sprintf("mode %d", m)
}

// parseConfig decodes and validates stdin; cniArgs (CNI_ARGS) may carry
// MAC=. The MAC comes from mac, then CNI_ARGS, then runtimeConfig.mac: the
// last one set wins, as in the reference.
func parseConfig(stdin []byte, cniArgs string) (*Config, error) {
	c := &Config{}
	if err := json.Unmarshal(stdin, c); err != nil {
		return nil, cni.NewError(cni.ErrDecodingFailure, "failed to parse macvlan network configuration", err.Error())
	}
	mode, ok := modes[c.Mode]
	if !ok {
		return nil, cni.Errorf(cni.ErrInvalidNetworkConfig, "unknown macvlan mode: %q (use bridge, private, vepa or passthru)", c.Mode)
	}
	c.mode = mode
	if c.MTU < 0 {
		return nil, cni.Errorf(cni.ErrInvalidNetworkConfig, "invalid MTU %d: use 0 to inherit the master's or a positive value", c.MTU)
	}
	if c.BCQueueLen != nil && (*c.BCQueueLen < 0 || *c.BCQueueLen > 1<<32-1) {
		return nil, cni.Errorf(cni.ErrInvalidNetworkConfig, "invalid bcqueuelen %d: must be between 0 and 4294967295", *c.BCQueueLen)
	}
	if c.Master != "" {
		if err := cni.ValidateInterfaceName(c.Master); err != nil {
			return nil, cni.NewError(cni.ErrInvalidNetworkConfig, fmt.Sprintf("invalid master %q", c.Master), err.Error())
		}
	}
	mac, err := link.ContainerMAC(c.Mac, cniArgs, []string{"MAC"}, c.RuntimeConfig.Mac)
	if err != nil {
		return nil, err
	}
	c.mac = mac
	return c, nil
}

// Add creates the macvlan in the container and configures it.
func (Plugin) Add(ctx context.Context, req *skel.Request) (*cni.Result, error) {
	conf, err := parseConfig(req.Config, req.Args)
	if err != nil {
		return nil, err
	}
	return onelink.AddChild(ctx, req, onelink.Child{
		Kind: "macvlan", Policy: onelink.IPAMOptional,
		Master: conf.Master, InContainer: conf.LinkInContainer, MTU: conf.MTU,
		// Tell the neighbours about the new MAC when addresses come up.
		Sysctls: []sysctl.Setting{
			{Key: sysctl.IfaceKey("ipv4", "conf", req.IfName, "arp_notify"), Value: "1", Optional: true},
			{Key: sysctl.IfaceKey("ipv6", "conf", req.IfName, "ndisc_notify"), Value: "1", Optional: true},
		},
		New: func(attrs netlink.LinkAttrs) netlink.Link {
			attrs.HardwareAddr = conf.mac
			mv := &netlink.Macvlan{LinkAttrs: attrs, Mode: conf.mode}
			if conf.BCQueueLen != nil {
				mv.BCQueueLen = uint32(*conf.BCQueueLen)
			}
			return mv
		},
	})
}

// Del removes the macvlan and the IPAM reservation; best effort and
// repeatable: it needs neither the master nor the namespace to exist, and
// only the common keys of the config (skel has decoded them), so a config
// ADD refused can still be deleted.
func (Plugin) Del(ctx context.Context, req *skel.Request) error {
	return onelink.Del(ctx, req)
}

// Check verifies the macvlan (kind, mode, master), its MAC, addresses and
// routes against prevResult, and the IPAM plugin's CHECK.
func (Plugin) Check(ctx context.Context, req *skel.Request) error {
	conf, err := parseConfig(req.Config, req.Args)
	if err != nil {
		return err
	}
	return onelink.CheckChild(ctx, req, conf.Master, conf.LinkInContainer, true, func(l netlink.Link) error {
		mv, ok := l.(*netlink.Macvlan)
		if !ok {
			return onelink.CheckErr(req.IfName+" is not a macvlan", "it is a "+l.Type())
		}
		if mv.Mode != conf.mode {
			return onelink.CheckErr(fmt.Sprintf("container macvlan mode %s does not match expected value: %s", ModeName(mv.Mode), ModeName(conf.mode)),
				"the interface was changed after ADD; DEL and ADD the attachment again")
		}
		return nil
	})
}

// Status reports whether the IPAM plugin can serve ADD.
func (Plugin) Status(ctx context.Context, req *skel.Request) error {
	if _, err := parseConfig(req.Config, ""); err != nil {
		return err
	}
	return onelink.Status(ctx, req)
}

// GC forwards to the IPAM plugin, which releases stale reservations; like
// DEL it needs only the common keys.
func (Plugin) GC(ctx context.Context, req *skel.Request) error {
	return onelink.GC(ctx, req)
}
