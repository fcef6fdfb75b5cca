// Package sbr is the source-based-routing meta plugin: traffic sourced from
// the container interface's addresses is routed by a table of its own. ADD
// picks the first table id from 100 up that no rule or route uses, adds a
// rule "from <address> lookup <table>" per address, a default route via the
// gateway in that table, and moves the interface's routes from main into
// it; with an explicit "table" only the rules are added. Everything runs
// over netlink inside the container's namespace, serialised by a lock on
// the namespace file (the same lock the reference plugin takes), so table
// ids never collide.
//
// Beyond the reference: rules carry knit's protocol number (RuleProtocol)
// so DEL removes only rules sbr made, for the addresses in prevResult even
// when the interface is already gone; a failing ADD undoes what it did;
// CHECK verifies the rules and default routes.
package sbr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/knit-cni/knit/internal/link"
	"github.com/knit-cni/knit/internal/netns"
	"github.com/knit-cni/knit/pkg/cni"
	"github.com/knit-cni/knit/pkg/cni/skel"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// FirstTable is the lowest table id ADD picks.
const FirstTable = 100

// RuleProtocol tags the rules sbr adds (FRA_PROTOCOL; "ip rule" shows it
// as "proto 75"), so DEL and CHECK tell them from an administrator's.
const RuleProtocol = 75

// Plugin implements skel.Plugin.
type Plugin struct{}

// Info describes the plugin for VERSION and the about banner.
var Info = skel.Info{Name: "sbr", About: "knit sbr plugin: source-based routing, a routing table per container interface"}

var _ skel.Plugin = Plugin{}

// Config is the sbr plugin's configuration.
type Config struct {
	cni.NetConf
	// Table, when set, is used for every address and only rules are added.
	Table *int `json:"table,omitempty"`
	// Gateways override the result's gateways: at most one per family.
	Gateways []string `json:"gateways,omitempty"`
	// AddSourceHints keeps the interface's subnet routes in main too.
	AddSourceHints bool `json:"addSourceHints,omitempty"`

	gw4, gw6 net.IP
}

func parseConfig(stdin []byte) (*Config, error) {
	c := &Config{}
	if err := json.Unmarshal(stdin, c); err != nil {
		return nil, cni.NewError(cni.ErrDecodingFailure, "failed to parse sbr configuration", err.Error())
	}
	if c.Table != nil && (*c.Table <= 0 || *c.Table == unix.RT_TABLE_MAIN || *c.Table == unix.RT_TABLE_LOCAL || *c.Table == unix.RT_TABLE_DEFAULT) {
		return nil, cni.Errorf(cni.ErrInvalidNetworkConfig, "invalid table %d: use a positive id other than 253, 254 and 255 (default, main, local)", *c.Table)
	}
	for _, g := range c.Gateways {
		ip := net.ParseIP(g)
		if ip == nil {
			return nil, cni.Errorf(cni.ErrInvalidNetworkConfig, "invalid gateway %q: give an IPv4 or IPv6 address", g)
		}
		slot := &c.gw6
		if ip.To4() != nil {
			slot, ip = &c.gw4, ip.To4()
		}
		if *slot != nil {
			return nil, cni.Errorf(cni.ErrInvalidNetworkConfig, "gateways lists two addresses of one family (%s and %s): give at most one IPv4 and one IPv6", *slot, g)
		}
		*slot = ip
	}
	return c, nil
}

// lockNetns takes the reference plugin's lock: an exclusive flock on the
// namespace file.
func lockNetns(path string) (unlock func(), err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// addrsFor returns the result's addresses that belong to ifname (or to no
// interface in particular), as host-length prefixes, with their gateways.
func addrsFor(res *cni.Result, ifname string) []*cni.IPConfig {
	var out []*cni.IPConfig
	for _, ip := range res.IPs {
		if ip.Interface != nil {
			i := *ip.Interface
			if i >= 0 && i < len(res.Interfaces) && res.Interfaces[i].Name != ifname {
				continue
			}
		}
		out = append(out, ip)
	}
	return out
}

func hostNet(ip net.IP) *net.IPNet {
	if v4 := ip.To4(); v4 != nil {
		return &net.IPNet{IP: v4, Mask: net.CIDRMask(32, 32)}
	}
	return &net.IPNet{IP: ip, Mask: net.CIDRMask(128, 128)}
}

func family(ip net.IP) int {
	if ip.To4() != nil {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}

func (c *Config) gateway(ip *cni.IPConfig) net.IP {
	if ip.IsV4() && c.gw4 != nil {
		return c.gw4
	}
	if !ip.IsV4() && c.gw6 != nil {
		return c.gw6
	}
	return ip.Gateway
}

// freeTable returns the first table id from FirstTable that no rule points
// to and no route lives in.
func freeTable(ns *link.Namespace) (int, error) {
	used := map[int]bool{}
	rules, err := link.Dump(func() ([]netlink.Rule, error) { return ns.Handle.RuleList(netlink.FAMILY_ALL) })
	if err != nil {
		return 0, fmt.Errorf("listing rules: %w", err)
	}
	for _, r := range rules {
		used[r.Table] = true
	}
	routes, err := link.Dump(func() ([]netlink.Route, error) {
		return ns.Handle.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return 0, fmt.Errorf("listing routes: %w", err)
	}
	for _, r := range routes {
		used[r.Table] = true
	}
	for t := FirstTable; ; t++ {
		if !used[t] {
			return t, nil
		}
	}
}

// existingTable returns the table of a rule sbr already made for one of
// the addresses (a repeated ADD reuses it), or 0.
func existingTable(ns *link.Namespace, conf *Config, ips []*cni.IPConfig) (int, error) {
	rules, err := link.Dump(func() ([]netlink.Rule, error) { return ns.Handle.RuleList(netlink.FAMILY_ALL) })
	if err != nil {
		return 0, err
	}
	for _, r := range rules {
		if r.Protocol != RuleProtocol || !ours(r, conf) {
			continue
		}
		for _, ip := range ips {
			if r.Src.IP.Equal(ip.Address.IP) {
				return r.Table, nil
			}
		}
	}
	return 0, nil
}

func newRule(src net.IP, table int) *netlink.Rule {
	r := netlink.NewRule()
	r.Family = family(src)
	r.Src = hostNet(src)
	r.Table = table
	r.Protocol = RuleProtocol
	return r
}

func defaultRoute(gw net.IP, idx, table int) *netlink.Route {
	dst := &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
	if gw.To4() == nil {
		dst = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
	}
	return &netlink.Route{Dst: dst, Gw: gw, LinkIndex: idx, Table: table}
}

// Add sets up source-based routing for the interface's addresses and
// passes prevResult on unchanged.
func (Plugin) Add(ctx context.Context, req *skel.Request) (_ *cni.Result, retErr error) {
	conf, err := parseConfig(req.Config)
	if err != nil {
		return nil, err
	}
	if req.PrevResult == nil {
		return nil, cni.NewError(cni.ErrInvalidNetworkConfig, "sbr must be called as a chained plugin",
			"put it after the plugin that creates the interface in a conflist; it needs that plugin's result as prevResult")
	}
	ips := addrsFor(req.PrevResult, req.IfName)
	if len(ips) == 0 {
		return nil, cni.NewError(cni.ErrInvalidNetworkConfig, "no IP addresses for "+req.IfName+" in prevResult",
			"sbr routes by source address: the plugin before it must assign addresses")
	}
	unlock, err := lockNetns(req.Netns)
	if err != nil {
		return nil, cni.NetNSError(req.Netns, err)
	}
	defer unlock()
	cont, err := link.Open(req.Netns)
	if err != nil {
		return nil, cni.NetNSError(req.Netns, err)
	}
	defer cont.Close()
	l, err := cont.Handle.LinkByName(req.IfName)
	if err != nil {
		return nil, cni.NewError(cni.ErrInvalidNetworkConfig, fmt.Sprintf("interface %s not found in %s", req.IfName, req.Netns), err.Error())
	}
	idx := l.Attrs().Index

	var undo []func()
	defer func() {
		if retErr != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	h := cont.Handle
	table := 0
	if conf.Table != nil {
		table = *conf.Table
	} else if table, err = existingTable(cont, conf, ips); err != nil {
		return nil, cni.NewError(cni.ErrInternal, "cannot list rules", err.Error())
	} else if table == 0 {
		if table, err = freeTable(cont); err != nil {
			return nil, cni.NewError(cni.ErrInternal, "cannot choose a routing table", err.Error())
		}
	}
	for _, ip := range ips {
		r := newRule(ip.Address.IP, table)
		if err := h.RuleAdd(r); err == nil {
			undo = append(undo, func() { _ = h.RuleDel(r) })
		} else if !errors.Is(err, unix.EEXIST) {
			return nil, cni.NewError(cni.ErrInternal, fmt.Sprintf("cannot add rule from %s lookup %d", r.Src, table), err.Error())
		}
		if conf.Table != nil {
			continue
		}
		if gw := conf.gateway(ip); gw != nil {
			rt := defaultRoute(gw, idx, table)
			if err := h.RouteReplace(rt); err != nil {
				return nil, cni.NewError(cni.ErrInternal, fmt.Sprintf("cannot add default route via %s to table %d", gw, table), err.Error())
			}
			undo = append(undo, func() { _ = h.RouteDel(rt) })
		}
	}
	if conf.Table == nil {
		if err := moveRoutes(cont, l, table, conf.AddSourceHints, &undo); err != nil {
			return nil, cni.NewError(cni.ErrInternal, "cannot move the routes of "+req.IfName+" to table "+fmt.Sprint(table), err.Error())
		}
	}
	return req.PrevResult, nil
}

// moveRoutes moves l's routes from main into table. With keepSubnets the
// directly connected subnet routes stay in main as well.
func moveRoutes(ns *link.Namespace, l netlink.Link, table int, keepSubnets bool, undo *[]func()) error {
	h := ns.Handle
	routes, err := link.Dump(func() ([]netlink.Route, error) {
		return h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{LinkIndex: l.Attrs().Index, Table: unix.RT_TABLE_MAIN},
			netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return fmt.Errorf("listing routes: %w", err)
	}
	for _, r := range routes {
		orig := r
		moved := r
		moved.Table = table
		moved.Flags = 0
		if err := h.RouteReplace(&moved); err != nil {
			return fmt.Errorf("adding %s to table %d: %w", r.Dst, table, err)
		}
		*undo = append(*undo, func() { _ = h.RouteDel(&moved) })
		if keepSubnets && r.Gw == nil && r.Scope == netlink.SCOPE_LINK {
			continue
		}
		if err := h.RouteDel(&orig); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("removing %s from main: %w", r.Dst, err)
		}
		*undo = append(*undo, func() { orig.Flags = 0; _ = h.RouteReplace(&orig) })
	}
	return nil
}

// Del removes sbr's rules for the interface's addresses (from prevResult
// and those still on the interface) and, when sbr chose the table, the
// routes left in it. With the namespace gone there is nothing to remove.
func (Plugin) Del(ctx context.Context, req *skel.Request) error {
	conf, err := parseConfig(req.Config)
	if err != nil {
		return err
	}
	if req.Netns == "" {
		return nil
	}
	unlock, err := lockNetns(req.Netns)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return cni.NetNSError(req.Netns, err)
	}
	defer unlock()
	cont, err := link.Open(req.Netns)
	if err != nil {
		if netns.IsNotExist(err) {
			return nil
		}
		return cni.NetNSError(req.Netns, err)
	}
	defer cont.Close()
	h := cont.Handle
	var addrs []net.IP
	if req.PrevResult != nil {
		for _, ip := range addrsFor(req.PrevResult, req.IfName) {
			addrs = append(addrs, ip.Address.IP)
		}
	}
	l, lerr := h.LinkByName(req.IfName)
	if lerr == nil {
		as, err := link.Dump(func() ([]netlink.Addr, error) { return h.AddrList(l, netlink.FAMILY_ALL) })
		if err != nil {
			return cni.NewError(cni.ErrInternal, "cannot list the addresses of "+req.IfName, err.Error())
		}
		for _, a := range as {
			addrs = append(addrs, a.IP)
		}
	}
	rules, err := link.Dump(func() ([]netlink.Rule, error) { return h.RuleList(netlink.FAMILY_ALL) })
	if err != nil {
		return cni.NewError(cni.ErrInternal, "cannot list rules", err.Error())
	}
	var errs []error
	tables := map[int]bool{}
	for _, r := range rules {
		if !ours(r, conf) || !srcIn(r.Src, addrs) {
			continue
		}
		if err := h.RuleDel(&r); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("deleting rule from %s lookup %d: %w", r.Src, r.Table, err))
			continue
		}
		tables[r.Table] = true
	}
	if conf.Table == nil && lerr == nil {
		for t := range tables {
			routes, err := link.Dump(func() ([]netlink.Route, error) {
				return h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{LinkIndex: l.Attrs().Index, Table: t},
					netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
			})
			if err != nil {
				errs = append(errs, err)
				continue
			}
			for _, rt := range routes {
				if err := h.RouteDel(&rt); err != nil && !errors.Is(err, unix.ESRCH) {
					errs = append(errs, fmt.Errorf("deleting route %s from table %d: %w", rt.Dst, t, err))
				}
			}
		}
	}
	if len(errs) > 0 {
		return cni.NewError(cni.ErrInternal, "cannot remove source-based routing", errors.Join(errs...).Error())
	}
	return nil
}

// ours reports whether r is a rule sbr adds: knit's protocol (or none, as
// the reference adds them), a host-length source, and the configured table
// or one sbr picks.
func ours(r netlink.Rule, conf *Config) bool {
	if r.Src == nil || (r.Protocol != RuleProtocol && r.Protocol != 0 && r.Protocol != unix.RTPROT_BOOT) {
		return false
	}
	if ones, bits := r.Src.Mask.Size(); ones != bits {
		return false
	}
	if conf.Table != nil {
		return r.Table == *conf.Table
	}
	return r.Table >= FirstTable && r.Table != unix.RT_TABLE_MAIN && r.Table != unix.RT_TABLE_LOCAL && r.Table != unix.RT_TABLE_DEFAULT
}

func srcIn(src *net.IPNet, addrs []net.IP) bool {
	for _, a := range addrs {
		if src.IP.Equal(a) {
			return true
		}
	}
	return false
}

// Check verifies each address has its rule and, when sbr chose the table,
// the table's default route via the gateway.
func (Plugin) Check(ctx context.Context, req *skel.Request) error {
	conf, err := parseConfig(req.Config)
	if err != nil {
		return err
	}
	if req.PrevResult == nil {
		return cni.NewError(cni.ErrInvalidNetworkConfig, "required prevResult missing",
			"CHECK needs the ADD result as prevResult; the runtime supplies it from its cache")
	}
	cont, err := link.Open(req.Netns)
	if err != nil {
		return cni.NetNSError(req.Netns, err)
	}
	defer cont.Close()
	h := cont.Handle
	l, err := h.LinkByName(req.IfName)
	if err != nil {
		return cni.NewError(cni.ErrInternal, fmt.Sprintf("interface %s not found in %s", req.IfName, req.Netns), err.Error())
	}
	rules, err := link.Dump(func() ([]netlink.Rule, error) { return h.RuleList(netlink.FAMILY_ALL) })
	if err != nil {
		return cni.NewError(cni.ErrInternal, "cannot list rules", err.Error())
	}
	for _, ip := range addrsFor(req.PrevResult, req.IfName) {
		table := -1
		for _, r := range rules {
			if ours(r, conf) && r.Src.IP.Equal(ip.Address.IP) {
				table = r.Table
			}
		}
		if table < 0 {
			return cni.NewError(cni.ErrInternal, fmt.Sprintf("no source rule for %s", ip.Address.IP),
				"expected a rule \"from "+hostNet(ip.Address.IP).String()+" lookup <table>\"")
		}
		gw := conf.gateway(ip)
		if conf.Table != nil || gw == nil {
			continue
		}
		routes, err := link.Dump(func() ([]netlink.Route, error) {
			return h.RouteListFiltered(family(gw), &netlink.Route{LinkIndex: l.Attrs().Index, Table: table},
				netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
		})
		if err != nil {
			return cni.NewError(cni.ErrInternal, "cannot list routes", err.Error())
		}
		found := false
		for _, rt := range routes {
			if (rt.Dst == nil || isDefault(rt.Dst)) && rt.Gw.Equal(gw) {
				found = true
			}
		}
		if !found {
			return cni.NewError(cni.ErrInternal, fmt.Sprintf("table %d has no default route via %s on %s", table, gw, req.IfName), "")
		}
	}
	return nil
}

func isDefault(n *net.IPNet) bool {
	ones, _ := n.Mask.Size()
	return ones == 0
}
