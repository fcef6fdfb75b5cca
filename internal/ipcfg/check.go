package ipcfg

import (
	"fmt"
	"net"

	"github.com/knit-cni/knit/internal/link"
	"github.com/knit-cni/knit/pkg/cni"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// where names a namespace in messages.
func where(ns *link.Namespace) string {
	if ns.Path == "" {
		return "the host namespace"
	}
	return ns.Path
}

// CheckAddresses verifies every address in ips is on l. A missing one gives
// an error for which IsMissing is true.
func CheckAddresses(ns *link.Namespace, l netlink.Link, ips []*cni.IPConfig) error {
	addrs, err := link.Dump(func() ([]netlink.Addr, error) { return ns.Handle.AddrList(l, netlink.FAMILY_ALL) })
	if err != nil {
		return fmt.Errorf("listing addresses of %s: %w", l.Attrs().Name, err)
	}
	for _, ip := range ips {
		want := ip.Address
		found := false
		for _, a := range addrs {
			if a.IP.Equal(want.IP) && maskEqual(a.Mask, want.Mask) {
				found = true
				break
			}
		}
		if !found {
			return fmt.Errorf("address %s is %w from %s in %s (it was removed after ADD; DEL and ADD the attachment again)",
				cidr(want), errMissing, l.Attrs().Name, where(ns))
		}
	}
	return nil
}

// CheckRoutes verifies every route of res (resolved as Configure does:
// gateway-less routes go via the family's gateway of ips) is on l.
func CheckRoutes(ns *link.Namespace, l netlink.Link, routes []*cni.Route, ips []*cni.IPConfig) error {
	v4gw, v6gw := Gateways(ips)
	for _, rt := range routes {
		want := toNetlink(rt, l.Attrs().Index, v4gw, v6gw)
		if err := CheckRoute(ns, want); err != nil {
			return err
		}
	}
	return nil
}

// CheckRoute verifies a route with want's destination, link, table (main
// when 0) and gateway (any when nil) exists.
func CheckRoute(ns *link.Namespace, want netlink.Route) error {
	family := netlink.FAMILY_V4
	if want.Dst != nil && want.Dst.IP.To4() == nil {
		family = netlink.FAMILY_V6
	}
	table := want.Table
	if table == 0 {
		table = unix.RT_TABLE_MAIN
	}
	filter := &netlink.Route{LinkIndex: want.LinkIndex, Table: table}
	got, err := link.Dump(func() ([]netlink.Route, error) {
		return ns.Handle.RouteListFiltered(family, filter, netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return fmt.Errorf("listing routes in %s: %w", where(ns), err)
	}
	for _, r := range got {
		if !sameDst(r.Dst, want.Dst, family) {
			continue
		}
		if want.Gw != nil && !routeHasGw(r, want.Gw) {
			continue
		}
		return nil
	}
	via := ""
	if want.Gw != nil {
		via = " via " + want.Gw.String()
	}
	return fmt.Errorf("route to %s%s (table %d) is %w in %s (it was removed after ADD; DEL and ADD the attachment again)",
		dstString(want.Dst, family), via, table, errMissing, where(ns))
}

func routeHasGw(r netlink.Route, gw net.IP) bool {
	if r.Gw != nil {
		return r.Gw.Equal(gw)
	}
	for _, nh := range r.MultiPath {
		if nh.Gw.Equal(gw) {
			return true
		}
	}
	return false
}

func sameDst(a, b *net.IPNet, family int) bool {
	return dstString(a, family) == dstString(b, family)
}

func dstString(n *net.IPNet, family int) string {
	if n == nil {
		if family == netlink.FAMILY_V6 {
			return "::/0"
		}
		return "0.0.0.0/0"
	}
	return (&net.IPNet{IP: n.IP.Mask(n.Mask), Mask: n.Mask}).String()
}

func maskEqual(a, b net.IPMask) bool {
	ao, ab := a.Size()
	bo, bb := b.Size()
	return ao == bo && ab == bb
}
