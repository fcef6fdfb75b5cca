// Package vrf is the vrf meta plugin, chained after a plugin that made the
// container interface: it puts CNI_IFNAME into a VRF (an L3 master device
// with its own routing table) inside the container's namespace, creating
// the VRF on first use. Configuration keys and behaviour match the
// reference plugin's.
//
// ADD creates and ups the VRF (table: the configured one, or the lowest id
// ≥ 1 no existing VRF uses; an existing VRF with another table is an
// error), refuses an interface that already has a master, enslaves it,
// re-adds the global IPv6 addresses the kernel drops when the link cycles,
// and moves the interface's routes (universe scope, including its next
// hops of multipath routes) into the VRF's table. prevResult is passed
// through. DEL releases the interface and deletes the VRF once it has no
// members; CHECK verifies the VRF, its table, the membership and the
// result's routes in the VRF table. The plugin keeps no state outside the
// namespace, so GC and STATUS have nothing to do.
package vrf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/knit-cni/knit/internal/ipcfg"
	"github.com/knit-cni/knit/internal/link"
	"github.com/knit-cni/knit/internal/netns"
	"github.com/knit-cni/knit/pkg/cni"
	"github.com/knit-cni/knit/pkg/cni/skel"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Plugin implements skel.Plugin.
type Plugin struct{}

// Info describes the plugin for VERSION and the about banner; like the
// reference it needs a chained prevResult, so 0.3.1 and later.
var Info = skel.Info{
	Name:     "vrf",
	Versions: []string{cni.Version031, cni.Version040, cni.Version100, cni.Version110},
	About:    "knit vrf plugin: puts the container interface into a VRF, config-compatible with the reference",
}

var _ skel.Plugin = Plugin{}

// Config is the vrf plugin's configuration.
type Config struct {
	cni.NetConf
	// VRFName is the VRF device to put the interface in.
	VRFName string `json:"vrfname"`
	// Table is the VRF's routing table; 0 picks a free one.
	Table uint32 `json:"table"`
}

func parseConfig(stdin []byte) (*Config, error) {
	c := &Config{}
	if err := json.Unmarshal(stdin, c); err != nil {
		return nil, cni.NewError(cni.ErrDecodingFailure, "failed to parse vrf network configuration", err.Error())
	}
	if c.VRFName == "" {
		return nil, cni.NewError(cni.ErrInvalidNetworkConfig, "configuration is expected to have a valid vrf name", `set "vrfname"`)
	}
	if err := cni.ValidateInterfaceName(c.VRFName); err != nil {
		return nil, cni.NewError(cni.ErrInvalidNetworkConfig, fmt.Sprintf("invalid vrfname %q", c.VRFName), err.Error())
	}
	if c.Table == unix.RT_TABLE_LOCAL || c.Table == unix.RT_TABLE_MAIN || c.Table == unix.RT_TABLE_DEFAULT {
		return nil, cni.Errorf(cni.ErrInvalidNetworkConfig, "table %d is one of the kernel's own tables (local, main, default): choose another or 0 for a free one", c.Table)
	}
	return c, nil
}

func openNetns(path string) (*link.Namespace, error) {
	ns, err := link.Open(path)
	if err != nil {
		return nil, cni.NetNSError(path, err)
	}
	return ns, nil
}

// Add puts the interface into the VRF.
func (Plugin) Add(_ context.Context, req *skel.Request) (_ *cni.Result, retErr error) {
	conf, err := parseConfig(req.Config)
	if err != nil {
		return nil, err
	}
	if req.PrevResult == nil {
		return nil, cni.NewError(cni.ErrInvalidNetworkConfig, "missing prevResult from earlier plugin",
			"vrf is a chained plugin: put it after the plugin that creates "+req.IfName)
	}
	ns, err := openNetns(req.Netns)
	if err != nil {
		return nil, err
	}
	defer ns.Close()

	// Everything that can refuse is checked before anything changes.
	l, err := ns.Handle.LinkByName(req.IfName)
	if err != nil {
		return nil, cni.NewError(cni.ErrInvalidNetworkConfig, fmt.Sprintf("interface %s not found in %s", req.IfName, req.Netns),
			"the plugin before vrf in the chain must create it")
	}
	if m := l.Attrs().MasterIndex; m != 0 {
		name := fmt.Sprintf("ifindex %d", m)
		if ml, err := ns.Handle.LinkByIndex(m); err == nil {
			name = ml.Attrs().Name
		}
		return nil, cni.Errorf(cni.ErrInvalidNetworkConfig, "interface %s has already a master set: %s", req.IfName, name)
	}
	vrf, err := findVRF(ns, conf.VRFName)
	if err != nil {
		return nil, err
	}
	if vrf != nil && conf.Table != 0 && vrf.Table != conf.Table {
		return nil, cni.Errorf(cni.ErrInvalidNetworkConfig, "VRF %s already exist with different routing table %d (the config says %d)",
			conf.VRFName, vrf.Table, conf.Table)
	}
	created := false
	if vrf == nil {
		if vrf, err = createVRF(ns, conf.VRFName, conf.Table); err != nil {
			return nil, err
		}
		created = true
	}
	defer func() {
		if retErr == nil {
			return
		}
		if cur, err := ns.Handle.LinkByIndex(l.Attrs().Index); err == nil && cur.Attrs().MasterIndex == vrf.Index {
			_ = ns.Handle.LinkSetNoMaster(cur)
		}
		if created {
			_ = ns.Handle.LinkDel(vrf)
		}
	}()
	if err := enslave(ns, l, vrf); err != nil {
		return nil, cni.NewError(cni.ErrInternal, fmt.Sprintf("cannot add %s to VRF %s", req.IfName, conf.VRFName), err.Error())
	}
	res := *req.PrevResult
	res.CNIVersion = req.Version
	return &res, nil
}

// findVRF returns the VRF called name in ns, nil if there is no link of
// that name, or an error if the link is something else.
func findVRF(ns *link.Namespace, name string) (*netlink.Vrf, error) {
	l, err := ns.Handle.LinkByName(name)
	if err != nil {
		if link.IsNotFound(err) {
			return nil, nil
		}
		return nil, cni.NewError(cni.ErrInternal, "cannot look up VRF "+name, err.Error())
	}
	vrf, ok := l.(*netlink.Vrf)
	if !ok {
		return nil, cni.Errorf(cni.ErrInvalidNetworkConfig, "%s exists in the container but is a %s, not a VRF: choose another vrfname", name, l.Type())
	}
	return vrf, nil
}

// createVRF makes the VRF (with table, or the lowest free one) and sets it up.
func createVRF(ns *link.Namespace, name string, table uint32) (*netlink.Vrf, error) {
	if table == 0 {
		links, err := link.Dump(ns.Handle.LinkList)
		if err != nil {
			return nil, cni.NewError(cni.ErrInternal, "cannot list links", err.Error())
		}
		table = freeTable(links)
	}
	attrs := netlink.NewLinkAttrs()
	attrs.Name = name
	if err := ns.Handle.LinkAdd(&netlink.Vrf{LinkAttrs: attrs, Table: table}); err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) {
			return nil, cni.NewError(cni.ErrUnsupportedField, "cannot create VRF "+name,
				"this kernel has no VRF support (CONFIG_NET_VRF): load the vrf module or use a kernel built with it")
		}
		return nil, cni.NewError(cni.ErrInternal, fmt.Sprintf("could not add VRF %s (table %d)", name, table), err.Error())
	}
	l, err := ns.Handle.LinkByName(name)
	if err != nil {
		return nil, cni.NewError(cni.ErrInternal, "cannot find the new VRF "+name, err.Error())
	}
	vrf, ok := l.(*netlink.Vrf)
	if !ok {
		return nil, cni.NewError(cni.ErrInternal, "the new VRF "+name+" reads back as a "+l.Type(), "")
	}
	if err := ns.Handle.LinkSetUp(vrf); err != nil {
		_ = ns.Handle.LinkDel(vrf)
		return nil, cni.NewError(cni.ErrInternal, "could not set VRF "+name+" up", err.Error())
	}
	return vrf, nil
}

// freeTable returns the lowest table id ≥ 1 no VRF among links uses,
// skipping the kernel's own tables.
func freeTable(links []netlink.Link) uint32 {
	used := map[uint32]bool{unix.RT_TABLE_DEFAULT: true, unix.RT_TABLE_MAIN: true, unix.RT_TABLE_LOCAL: true}
	for _, l := range links {
		if v, ok := l.(*netlink.Vrf); ok {
			used[v.Table] = true
		}
	}
	t := uint32(1)
	for used[t] {
		t++
	}
	return t
}

// routeAddTimeout bounds the retries of a route whose next hop is not
// reachable yet (an IPv6 address still coming back after the enslave).
const routeAddTimeout = 3 * time.Second

// enslave makes vrf the master of l, restores the IPv6 addresses the
// kernel dropped and moves l's routes into the VRF's table.
func enslave(ns *link.Namespace, l netlink.Link, vrf *netlink.Vrf) error {
	name := l.Attrs().Name
	before, err := link.Dump(func() ([]netlink.Addr, error) { return ns.Handle.AddrList(l, netlink.FAMILY_V6) })
	if err != nil {
		return fmt.Errorf("listing the IPv6 addresses of %s: %w", name, err)
	}
	routes, err := routesVia(ns, l.Attrs().Index)
	if err != nil {
		return err
	}
	if err := ns.Handle.LinkSetMasterByIndex(l, vrf.Index); err != nil {
		return fmt.Errorf("could not set VRF %s as master of %s: %w", vrf.Name, name, err)
	}
	after, err := link.Dump(func() ([]netlink.Addr, error) { return ns.Handle.AddrList(l, netlink.FAMILY_V6) })
	if err != nil {
		return fmt.Errorf("listing the IPv6 addresses of %s: %w", name, err)
	}
	for _, a := range before {
		if a.Scope != int(netlink.SCOPE_UNIVERSE) || hasAddr(after, a) {
			continue
		}
		re := &netlink.Addr{IPNet: a.IPNet, Flags: a.Flags & (unix.IFA_F_NODAD | unix.IFA_F_NOPREFIXROUTE), Scope: a.Scope}
		if err := ns.Handle.AddrAdd(l, re); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("could not restore address %s to %s in VRF %s: %w", a.IPNet, name, vrf.Name, err)
		}
	}
	for _, r := range routes {
		r.Table = int(vrf.Table)
		if err := addRoute(ns, &r); err != nil {
			return fmt.Errorf("could not move route %s to table %d of VRF %s: %w", dst(r), vrf.Table, vrf.Name, err)
		}
	}
	return nil
}

// routesVia lists the universe-scope routes of the main table that leave
// through ifindex, as single-path routes (a multipath route contributes
// its next hops through ifindex). Kernel-made connected and local routes
// are left out: the kernel remakes them in the VRF table itself.
func routesVia(ns *link.Namespace, ifindex int) ([]netlink.Route, error) {
	all, err := link.Dump(func() ([]netlink.Route, error) {
		return ns.Handle.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return nil, fmt.Errorf("listing routes: %w", err)
	}
	var out []netlink.Route
	for _, r := range all {
		if r.Scope != netlink.SCOPE_UNIVERSE || r.Type != unix.RTN_UNICAST || r.Protocol == unix.RTPROT_KERNEL {
			continue
		}
		// State flags the kernel reports (linkdown, dead) cannot be set.
		r.Flags &= unix.RTNH_F_ONLINK
		if r.LinkIndex == ifindex {
			r.MultiPath = nil
			out = append(out, r)
			continue
		}
		var hops []*netlink.NexthopInfo
		for _, nh := range r.MultiPath {
			if nh.LinkIndex == ifindex {
				h := *nh
				h.Flags &= unix.RTNH_F_ONLINK
				hops = append(hops, &h)
			}
		}
		switch {
		case len(hops) == 1:
			r.MultiPath = nil
			r.LinkIndex, r.Gw, r.Flags = ifindex, hops[0].Gw, hops[0].Flags
			out = append(out, r)
		case len(hops) > 1:
			r.MultiPath = hops
			out = append(out, r)
		}
	}
	return out, nil
}

// addRoute adds r, retrying for a while when its gateway is not reachable
// yet; a route that exists already is fine.
func addRoute(ns *link.Namespace, r *netlink.Route) error {
	deadline := time.Now().Add(routeAddTimeout)
	wait := 10 * time.Millisecond
	for {
		err := ns.Handle.RouteAdd(r)
		if err == nil || errors.Is(err, unix.EEXIST) {
			return nil
		}
		if !errors.Is(err, unix.ENETUNREACH) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(wait)
		wait = min(2*wait, 200*time.Millisecond)
	}
}

func hasAddr(list []netlink.Addr, a netlink.Addr) bool {
	for _, b := range list {
		if b.IPNet.String() == a.IPNet.String() {
			return true
		}
	}
	return false
}

func dst(r netlink.Route) string {
	if r.Dst == nil {
		return "default"
	}
	return r.Dst.String()
}

// Del releases the interface and deletes the VRF once it has no members.
// A namespace, VRF or interface that is gone is fine.
func (Plugin) Del(_ context.Context, req *skel.Request) error {
	conf, err := parseConfig(req.Config)
	if err != nil {
		return err
	}
	if req.Netns == "" {
		return nil
	}
	ns, err := link.Open(req.Netns)
	if err != nil {
		if netns.IsNotExist(err) {
			return nil
		}
		return cni.NetNSError(req.Netns, err)
	}
	defer ns.Close()
	vrf, err := findVRF(ns, conf.VRFName)
	if err != nil || vrf == nil {
		return err
	}
	if l, err := ns.Handle.LinkByName(req.IfName); err == nil && l.Attrs().MasterIndex == vrf.Index {
		if err := ns.Handle.LinkSetNoMaster(l); err != nil {
			return cni.NewError(cni.ErrInternal, fmt.Sprintf("cannot release %s from VRF %s", req.IfName, conf.VRFName), err.Error())
		}
	} else if err != nil && !link.IsNotFound(err) {
		return cni.NewError(cni.ErrInternal, "cannot look up "+req.IfName, err.Error())
	}
	members, err := members(ns, vrf)
	if err != nil {
		return cni.NewError(cni.ErrInternal, "cannot list the members of VRF "+conf.VRFName, err.Error())
	}
	if len(members) == 0 {
		if err := ns.Handle.LinkDel(vrf); err != nil && !link.IsNotFound(err) {
			return cni.NewError(cni.ErrInternal, "cannot delete VRF "+conf.VRFName, err.Error())
		}
	}
	return nil
}

// members returns the links whose master is vrf.
func members(ns *link.Namespace, vrf *netlink.Vrf) ([]netlink.Link, error) {
	links, err := link.Dump(ns.Handle.LinkList)
	if err != nil {
		return nil, err
	}
	var out []netlink.Link
	for _, l := range links {
		if l.Attrs().MasterIndex == vrf.Index {
			out = append(out, l)
		}
	}
	return out, nil
}

// Check verifies the VRF, its table, the interface's membership and that
// the result's routes are in the VRF table.
func (Plugin) Check(_ context.Context, req *skel.Request) error {
	conf, err := parseConfig(req.Config)
	if err != nil {
		return err
	}
	if req.PrevResult == nil {
		return cni.NewError(cni.ErrInvalidNetworkConfig, "missing prevResult from earlier plugin",
			"CHECK needs the ADD result as prevResult; the runtime supplies it from its cache")
	}
	ns, err := openNetns(req.Netns)
	if err != nil {
		return err
	}
	defer ns.Close()
	vrf, err := findVRF(ns, conf.VRFName)
	if err != nil {
		return err
	}
	if vrf == nil {
		return checkErr("VRF "+conf.VRFName+" not found in "+req.Netns, "it was deleted after ADD")
	}
	if conf.Table != 0 && vrf.Table != conf.Table {
		return checkErr(fmt.Sprintf("VRF %s uses table %d, the config says %d", conf.VRFName, vrf.Table, conf.Table), "")
	}
	l, err := ns.Handle.LinkByName(req.IfName)
	if err != nil {
		return checkErr(fmt.Sprintf("interface %s not found in %s", req.IfName, req.Netns), err.Error())
	}
	if l.Attrs().MasterIndex != vrf.Index {
		return checkErr(fmt.Sprintf("Failed to find %s associated to vrf %s", req.IfName, conf.VRFName),
			"the interface was released from the VRF after ADD")
	}
	prev := req.PrevResult
	idx := ipcfg.ContainerIndex(prev, req.IfName)
	if idx < 0 {
		return nil
	}
	ips := ipcfg.IPsFor(prev, idx)
	var routes []*cni.Route
	for _, rt := range prev.Routes {
		if rt.Table != nil && *rt.Table != unix.RT_TABLE_MAIN {
			continue
		}
		c := *rt
		c.Table = cni.Int(int(vrf.Table))
		routes = append(routes, &c)
	}
	if err := ipcfg.CheckRoutes(ns, l, routes, ips); err != nil {
		return checkErr("route check in the VRF table failed", err.Error())
	}
	return nil
}

func checkErr(msg, details string) error { return cni.NewError(cni.ErrInternal, msg, details) }
