// Package tap is the tap plugin: the container gets a persistent tap
// device (IFF_TAP|IFF_VNET_HDR, optionally multi-queue, optionally owned
// by a uid/gid) for a VM monitor or a userspace network stack, optionally
// enslaved to a bridge that lives inside the container's namespace, with
// optional IPAM. Configuration keys and results match the reference
// plugin's.
//
// The device is made with the /dev/net/tun ioctls inside the container's
// namespace — never by running `ip tuntap`, which the reference does when
// owner or group is unset — so a tap without owner and group really has
// none (any process with CAP_NET_ADMIN in the namespace may attach).
// selinuxContext is refused on hosts that enforce SELinux labels (setting
// it needs an exec under that label) and ignored elsewhere.
package tap

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"

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
var Info = skel.Info{Name: "tap", About: "knit tap plugin: a tap device in the container, config-compatible with the reference"}

var (
	_ skel.Plugin   = Plugin{}
	_ skel.GCer     = Plugin{}
	_ skel.Statuser = Plugin{}
)

// Config is the tap plugin's configuration, key for key the reference's.
type Config struct {
	cni.NetConf
	MultiQueue     bool    `json:"multiQueue"`
	MTU            int     `json:"mtu"`
	Mac            string  `json:"mac,omitempty"`
	Owner          *uint32 `json:"owner,omitempty"`
	Group          *uint32 `json:"group,omitempty"`
	SelinuxContext string  `json:"selinuxContext,omitempty"`
	Bridge         string  `json:"bridge,omitempty"`
	RuntimeConfig  struct {
		Mac string `json:"mac,omitempty"`
	} `json:"runtimeConfig"`

	mac net.HardwareAddr
}

// selinuxEnabled reports whether the host has an SELinux filesystem.
var selinuxEnabled = func() bool {
	_, err := os.Stat("/sys/fs/selinux/enforce")
	return err == nil
}

// parseConfig decodes and validates stdin; cniArgs (CNI_ARGS) may carry
// MAC=. The MAC comes from mac, then CNI_ARGS, then runtimeConfig.mac: the
// last one set wins.
func parseConfig(stdin []byte, cniArgs string) (*Config, error) {
	c := &Config{}
	if err := json.Unmarshal(stdin, c); err != nil {
		return nil, cni.NewError(cni.ErrDecodingFailure, "failed to parse tap network configuration", err.Error())
	}
	if c.MTU < 0 {
		return nil, cni.Errorf(cni.ErrInvalidNetworkConfig, "invalid mtu %d: use 0 for the kernel default or a positive value", c.MTU)
	}
	if c.Bridge != "" {
		if err := cni.ValidateInterfaceName(c.Bridge); err != nil {
			return nil, cni.NewError(cni.ErrInvalidNetworkConfig, fmt.Sprintf("invalid bridge name %q", c.Bridge), err.Error())
		}
	}
	mac, err := link.ContainerMAC(c.Mac, cniArgs, []string{"MAC"}, c.RuntimeConfig.Mac)
	if err != nil {
		return nil, err
	}
	c.mac = mac
	return c, nil
}

// Add creates the tap in the container and configures it.
func (Plugin) Add(ctx context.Context, req *skel.Request) (*cni.Result, error) {
	conf, err := parseConfig(req.Config, req.Args)
	if err != nil {
		return nil, err
	}
	if conf.SelinuxContext != "" {
		if selinuxEnabled() {
			return nil, cni.NewError(cni.ErrUnsupportedField, "selinuxContext is not supported by knit's tap plugin",
				"labelling the tap needs a helper exec'd under that context; remove selinuxContext or use the reference tap plugin")
		}
		slog.Info("SELinux is not enabled: ignoring selinuxContext", "context", conf.SelinuxContext)
	}
	a, err := onelink.Open(req)
	if err != nil {
		return nil, err
	}
	defer a.Close()
	return a.Add(ctx, onelink.Spec{
		Kind:    "tap",
		Policy:  onelink.IPAMOptional,
		Sysctls: []sysctl.Setting{{Key: sysctl.IfaceKey("ipv4", "conf", req.IfName, "arp_notify"), Value: "1", Optional: true}},
		Create: func(cont *link.Namespace) (netlink.Link, error) {
			var br netlink.Link
			if conf.Bridge != "" {
				if br, err = findBridge(cont, conf.Bridge, req.Netns); err != nil {
					return nil, err
				}
			}
			l, err := link.CreateTap(cont, link.Tap{Name: req.IfName, MultiQueue: conf.MultiQueue, Owner: conf.Owner,
				Group: conf.Group, MTU: conf.MTU, MAC: conf.mac})
			if err != nil {
				return nil, err
			}
			if br != nil {
				if err := link.AttachPort(cont, l, br, link.Port{}); err != nil {
					_ = cont.Handle.LinkDel(l)
					return nil, err
				}
			}
			return l, nil
		},
	})
}

// findBridge returns the bridge called name in the container namespace.
func findBridge(cont *link.Namespace, name, nsPath string) (netlink.Link, error) {
	l, err := cont.Handle.LinkByName(name)
	if err != nil {
		if link.IsNotFound(err) {
			return nil, cni.NewError(cni.ErrInvalidNetworkConfig, fmt.Sprintf("bridge %q not found in %s", name, nsPath),
				"the tap's bridge must already exist inside the container's namespace (an earlier plugin or the runtime makes it)")
		}
		return nil, cni.NewError(cni.ErrInternal, "cannot look up bridge "+name, err.Error())
	}
	if _, ok := l.(*netlink.Bridge); !ok {
		return nil, cni.NewError(cni.ErrInvalidNetworkConfig, fmt.Sprintf("%q in %s is not a bridge", name, nsPath), "it is a "+l.Type())
	}
	return l, nil
}

// Del removes the tap and the IPAM reservation; best effort and
// repeatable, and fine when the namespace is gone.
func (Plugin) Del(ctx context.Context, req *skel.Request) error {
	if _, err := parseConfig(req.Config, ""); err != nil {
		return err
	}
	return onelink.Del(ctx, req)
}

// Check verifies the tap (mode, flags, owner, group, MTU, bridge), its MAC,
// addresses and routes against prevResult, and the IPAM plugin's CHECK.
func (Plugin) Check(ctx context.Context, req *skel.Request) error {
	conf, err := parseConfig(req.Config, req.Args)
	if err != nil {
		return err
	}
	a, err := onelink.Open(req)
	if err != nil {
		return err
	}
	defer a.Close()
	return a.Check(ctx, func(l netlink.Link) error {
		info, err := link.DescribeTap(a.Cont, l)
		if err != nil {
			return onelink.CheckErr(req.IfName+" is not a tap", err.Error())
		}
		changed := func(what string, got, want any) error {
			return onelink.CheckErr(fmt.Sprintf("tap %s %s is %v, want %v", req.IfName, what, got, want),
				"the interface was changed after ADD; DEL and ADD the attachment again")
		}
		switch {
		case !info.Tap:
			return changed("mode", "tun", "tap")
		case info.MultiQueue != conf.MultiQueue:
			return changed("multi-queue", info.MultiQueue, conf.MultiQueue)
		case !sameID(info.Owner, conf.Owner):
			return changed("owner", idString(info.Owner), idString(conf.Owner))
		case !sameID(info.Group, conf.Group):
			return changed("group", idString(info.Group), idString(conf.Group))
		case conf.MTU > 0 && l.Attrs().MTU != conf.MTU:
			return changed("MTU", l.Attrs().MTU, conf.MTU)
		}
		if conf.Bridge != "" {
			br, err := findBridge(a.Cont, conf.Bridge, req.Netns)
			if err != nil {
				return err
			}
			if l.Attrs().MasterIndex != br.Attrs().Index {
				return onelink.CheckErr(fmt.Sprintf("tap %s is not a port of bridge %s", req.IfName, conf.Bridge),
					"the interface was changed after ADD; DEL and ADD the attachment again")
			}
		}
		return nil
	})
}

func sameID(a, b *uint32) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return *a == *b
}

func idString(p *uint32) string {
	if p == nil {
		return "none"
	}
	return fmt.Sprint(*p)
}

// Status reports whether the IPAM plugin can serve ADD.
func (Plugin) Status(ctx context.Context, req *skel.Request) error {
	if _, err := parseConfig(req.Config, ""); err != nil {
		return err
	}
	return onelink.Status(ctx, req)
}

// GC forwards to the IPAM plugin, which releases stale reservations.
func (Plugin) GC(ctx context.Context, req *skel.Request) error {
	if _, err := parseConfig(req.Config, ""); err != nil {
		return err
	}
	return onelink.GC(ctx, req)
}
