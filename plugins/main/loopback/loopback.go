// Package loopback is the loopback plugin: ADD sets the container's "lo" up
// and reports it with its loopback addresses, DEL sets it down, CHECK
// verifies it is up. It has no configuration keys of its own and, like the
// reference plugin, always works on "lo" whatever CNI_IFNAME says.
//
// Chained after another plugin, ADD passes the previous result through
// unchanged.
package loopback

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/knit-cni/knit/internal/link"
	"github.com/knit-cni/knit/internal/netns"
	"github.com/knit-cni/knit/pkg/cni"
	"github.com/knit-cni/knit/pkg/cni/skel"
	"github.com/vishvananda/netlink"
)

// Name is the interface the plugin manages.
const Name = "lo"

// loopbackMAC is what the kernel reports for lo and what the reference
// plugin puts in its result.
const loopbackMAC = "00:00:00:00:00:00"

// Info describes the plugin for VERSION and the about banner.
var Info = skel.Info{
	Name:  "loopback",
	About: "knit loopback: sets the loopback interface of the container's network namespace up",
}

// Plugin is the loopback plugin. The zero value is ready to use.
type Plugin struct{}

var _ skel.Plugin = Plugin{}

// Add sets lo up in CNI_NETNS and returns lo with its first IPv4 and first
// IPv6 address, or the prevResult unchanged when chained.
func (Plugin) Add(_ context.Context, req *skel.Request) (*cni.Result, error) {
	ns, err := openNetns(req.Netns)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	lo, err := findLo(ns)
	if err != nil {
		return nil, err
	}
	if err := link.SetUp(ns, lo); err != nil {
		return nil, fmt.Errorf("setting %s up: %w", Name, err)
	}
	addrs, err := link.AddrsOf(ns, lo, netlink.FAMILY_ALL)
	if err != nil {
		return nil, err
	}
	var v4, v6 *net.IPNet
	for _, a := range addrs {
		if !a.IP.IsLoopback() {
			return nil, cni.NewError(cni.ErrInternal, fmt.Sprintf("%s has a non-loopback address %s", Name, a.IPNet),
				"refusing to report it as the container's loopback; remove it from "+Name+" in "+req.Netns)
		}
		if a.IP.To4() != nil && v4 == nil {
			v4 = a.IPNet
		} else if a.IP.To4() == nil && v6 == nil {
			v6 = a.IPNet
		}
	}
	if req.PrevResult != nil {
		return req.PrevResult, nil
	}
	res := &cni.Result{
		CNIVersion: cni.CurrentVersion,
		Interfaces: []*cni.Interface{{Name: Name, Mac: loopbackMAC, Sandbox: req.Netns}},
	}
	for _, a := range []*net.IPNet{v4, v6} {
		if a != nil {
			res.IPs = append(res.IPs, &cni.IPConfig{Interface: cni.Int(0), Address: *a})
		}
	}
	return res, nil
}

// Del sets lo down. An empty CNI_NETNS or a namespace that is gone is
// success: there is nothing left to undo.
func (Plugin) Del(_ context.Context, req *skel.Request) error {
	if req.Netns == "" {
		return nil
	}
	ns, err := link.Open(req.Netns)
	var notNS *netns.NotNSError
	if netns.IsNotExist(err) || errors.As(err, &notNS) {
		// The runtime removed the namespace (and perhaps left its mount
		// point behind as a plain file): lo went with it.
		return nil
	}
	if err != nil {
		return err
	}
	defer ns.Close()
	lo, err := findLo(ns)
	if err != nil {
		return err
	}
	if err := link.SetDown(ns, lo); err != nil {
		return fmt.Errorf("setting %s down: %w", Name, err)
	}
	return nil
}

// Check verifies that lo is up and still has the addresses the previous
// result reported for it.
func (Plugin) Check(_ context.Context, req *skel.Request) error {
	want := reportedAddrs(req.PrevResult, req.Netns)
	ns, err := openNetns(req.Netns)
	if err != nil {
		return err
	}
	defer ns.Close()
	lo, err := findLo(ns)
	if err != nil {
		return err
	}
	if lo.Attrs().Flags&net.FlagUp == 0 {
		return cni.NewError(cni.ErrInternal, "loopback interface is down",
			fmt.Sprintf("%s in %s is down; ADD set it up and something has set it down since", Name, req.Netns))
	}
	if len(want) == 0 {
		return nil
	}
	addrs, err := link.AddrsOf(ns, lo, netlink.FAMILY_ALL)
	if err != nil {
		return err
	}
	for _, w := range want {
		found := false
		for _, a := range addrs {
			if a.IPNet.String() == w.String() {
				found = true
			}
		}
		if !found {
			return cni.NewError(cni.ErrInternal, fmt.Sprintf("loopback address %s is missing", w.String()),
				fmt.Sprintf("the previous result reports %s on %s in %s but the interface does not have it", w.String(), Name, req.Netns))
		}
	}
	return nil
}

// findLo looks lo up in ns.
func findLo(ns *link.Namespace) (netlink.Link, error) {
	lo, err := link.ByName(ns, Name)
	if err != nil {
		return nil, fmt.Errorf("finding %s: %w", Name, err)
	}
	return lo, nil
}

// reportedAddrs returns the addresses prev reports on lo in netnsPath.
func reportedAddrs(prev *cni.Result, netnsPath string) []net.IPNet {
	if prev == nil {
		return nil
	}
	var out []net.IPNet
	for _, ip := range prev.IPs {
		if ip.Interface == nil || *ip.Interface < 0 || *ip.Interface >= len(prev.Interfaces) {
			continue
		}
		iface := prev.Interfaces[*ip.Interface]
		if iface.Name == Name && iface.Sandbox == netnsPath {
			out = append(out, ip.Address)
		}
	}
	return out
}

// openNetns opens the container namespace, turning a missing or invalid
// CNI_NETNS into a clear code-4 error.
func openNetns(path string) (*link.Namespace, error) {
	ns, err := link.Open(path)
	var notNS *netns.NotNSError
	switch {
	case err == nil:
		return ns, nil
	case netns.IsNotExist(err):
		return nil, cni.NewError(cni.ErrInvalidEnvironmentVariables, "CNI_NETNS does not exist",
			fmt.Sprintf("%s: the container's network namespace must exist for ADD and CHECK", path))
	case errors.As(err, &notNS):
		return nil, cni.NewError(cni.ErrInvalidEnvironmentVariables, "CNI_NETNS is not a network namespace", notNS.Error())
	}
	return nil, err
}
