// Package bandwidth is the bandwidth meta plugin: it shapes a veth
// attachment's traffic with token-bucket (TBF) qdiscs, all over netlink.
// Traffic toward the container is shaped by a TBF root qdisc on the host
// end of the veth; traffic from the container is redirected (ingress qdisc,
// match-all u32 filter, mirred) from the host end to an ifb device whose
// TBF shapes it. Keys, units, the ifb name and the TBF arithmetic match the
// reference plugin.
//
// Beyond the reference: the ifb carries its owner in its alias so GC can
// remove ifbs of attachments that are gone; DEL also removes the qdiscs and
// filter from the host veth when it still exists, and works when the
// container's namespace is gone; CHECK re-derives and compares every TBF
// parameter and verifies the redirect to the ifb.
package bandwidth

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

// Plugin implements skel.Plugin and skel.GCer.
type Plugin struct{}

// Info describes the plugin for VERSION and the about banner.
var Info = skel.Info{
	Name:     "bandwidth",
	About:    "knit bandwidth plugin: TBF shaping of a veth attachment (ifb for egress), config-compatible with the reference",
	Versions: []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"},
}

var (
	_ skel.Plugin = Plugin{}
	_ skel.GCer   = Plugin{}
)

// hostVeth opens the host and container namespaces and finds the host end
// of the container's interface.
func hostVeth(req *skel.Request) (host *link.Namespace, veth netlink.Link, err error) {
	host, err = link.Current()
	if err != nil {
		return nil, nil, cni.NewError(cni.ErrInternal, "cannot open the host network namespace", err.Error())
	}
	cont, err := link.Open(req.Netns)
	if err != nil {
		host.Close()
		if netns.IsNotExist(err) {
			return nil, nil, err
		}
		return nil, nil, cni.NetNSError(req.Netns, err)
	}
	defer cont.Close()
	cl, err := cont.Handle.LinkByName(req.IfName)
	if err != nil {
		host.Close()
		if link.IsNotFound(err) {
			return nil, nil, cni.NewError(cni.ErrInvalidNetworkConfig, fmt.Sprintf("interface %s not found in %s", req.IfName, req.Netns),
				"bandwidth is a chained plugin: put it after a plugin that creates a veth (bridge, ptp)")
		}
		return nil, nil, cni.NewError(cni.ErrInternal, "cannot look up "+req.IfName, err.Error())
	}
	veth, err = link.Peer(host, cl)
	if err != nil {
		host.Close()
		return nil, nil, cni.NewError(cni.ErrInvalidNetworkConfig, "cannot find the host end of "+req.IfName,
			err.Error()+": bandwidth shapes veth attachments only (bridge, ptp)")
	}
	return host, veth, nil
}

// Add shapes the attachment and passes prevResult on, with the ifb added
// to its interfaces when egress is shaped.
func (Plugin) Add(ctx context.Context, req *skel.Request) (_ *cni.Result, retErr error) {
	conf, err := parseConfig(req.Config)
	if err != nil {
		return nil, err
	}
	if req.PrevResult == nil {
		return nil, cni.NewError(cni.ErrInvalidNetworkConfig, "bandwidth must be called as a chained plugin",
			"put it after the plugin that creates the interface in a conflist; it needs that plugin's result as prevResult")
	}
	res := req.PrevResult
	lim := conf.Limits
	if !lim.Ingress() && !lim.Egress() {
		return res, nil
	}
	host, veth, err := hostVeth(req)
	if err != nil {
		if netns.IsNotExist(err) {
			return nil, cni.NetNSError(req.Netns, err)
		}
		return nil, err
	}
	defer host.Close()

	var undo []func()
	defer func() {
		if retErr != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	if lim.Ingress() {
		p, _ := deriveTBF(lim.IngressRate, lim.IngressBurst)
		if err := setTBF(host, veth, p); err != nil {
			return nil, cni.NewError(cni.ErrInternal, "cannot shape traffic toward the container", err.Error())
		}
		undo = append(undo, func() { _ = delTBF(host, veth) })
	}
	if lim.Egress() {
		name := IfbName(conf.Name, req.ContainerID)
		alias := ownerAlias(conf.Name, req.ContainerID, req.IfName)
		ifb, created, err := createIfb(host, name, alias, veth.Attrs().MTU)
		if created {
			undo = append(undo, func() { _ = deleteIfb(host, name, alias) })
		}
		if err != nil {
			return nil, cni.NewError(cni.ErrInternal, "cannot set up the ifb for egress shaping", err.Error())
		}
		p, _ := deriveTBF(lim.EgressRate, lim.EgressBurst)
		if err := setTBF(host, ifb, p); err != nil {
			return nil, cni.NewError(cni.ErrInternal, "cannot shape traffic from the container", err.Error())
		}
		if err := redirectToIfb(host, veth, ifb); err != nil {
			return nil, cni.NewError(cni.ErrInternal, "cannot redirect the container's traffic to the ifb", err.Error())
		}
		undo = append(undo, func() { _ = undoRedirect(host, veth, ifb.Attrs().Index) })
		if !hasInterface(res, name) {
			res.Interfaces = append(res.Interfaces, &cni.Interface{Name: name, Mac: ifb.Attrs().HardwareAddr.String()})
		}
	}
	return res, nil
}

func hasInterface(res *cni.Result, name string) bool {
	for _, i := range res.Interfaces {
		if i.Name == name && i.Sandbox == "" {
			return true
		}
	}
	return false
}

// Del removes the shaping: the ifb (found by its derived name, so this
// works after the container's namespace is gone) and, while the host veth
// still exists, its TBF, redirect filter and ingress qdisc. Repeating it is
// harmless.
func (Plugin) Del(ctx context.Context, req *skel.Request) error {
	conf, err := parseConfig(req.Config)
	if err != nil {
		return err
	}
	name := IfbName(conf.Name, req.ContainerID)
	alias := ownerAlias(conf.Name, req.ContainerID, req.IfName)
	var errs []error
	if req.Netns != "" {
		if host, veth, err := hostVeth(req); err == nil {
			if ifb, lerr := host.Handle.LinkByName(name); lerr == nil && ifbOwnedBy(ifb, alias) {
				if err := undoRedirect(host, veth, ifb.Attrs().Index); err != nil {
					errs = append(errs, err)
				}
			}
			if conf.Limits.Ingress() {
				if err := delTBF(host, veth); err != nil {
					errs = append(errs, err)
				}
			}
			host.Close()
		}
		// Any lookup failure means the veth is gone or unreachable: the
		// kernel removed its qdiscs with it, and the ifb is all that is left.
	}
	host, err := link.Current()
	if err != nil {
		return cni.NewError(cni.ErrInternal, "cannot open the host network namespace", err.Error())
	}
	defer host.Close()
	if err := deleteIfb(host, name, alias); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return cni.NewError(cni.ErrInternal, "cannot remove bandwidth shaping", errors.Join(errs...).Error())
	}
	return nil
}

func ifbOwnedBy(l netlink.Link, alias string) bool {
	_, ok := l.(*netlink.Ifb)
	return ok && (l.Attrs().Alias == "" || l.Attrs().Alias == alias)
}

// Check verifies the shaping the config asks for is in place with exactly
// the derived TBF parameters, and the redirect to the ifb.
func (Plugin) Check(ctx context.Context, req *skel.Request) error {
	conf, err := parseConfig(req.Config)
	if err != nil {
		return err
	}
	if req.PrevResult == nil {
		return cni.NewError(cni.ErrInvalidNetworkConfig, "required prevResult missing",
			"CHECK needs the ADD result as prevResult; the runtime supplies it from its cache")
	}
	lim := conf.Limits
	if !lim.Ingress() && !lim.Egress() {
		return nil
	}
	host, veth, err := hostVeth(req)
	if err != nil {
		if netns.IsNotExist(err) {
			return cni.NetNSError(req.Netns, err)
		}
		return err
	}
	defer host.Close()
	if lim.Ingress() {
		p, _ := deriveTBF(lim.IngressRate, lim.IngressBurst)
		if err := checkTBF(host, veth, p); err != nil {
			return cni.NewError(cni.ErrInternal, "ingress shaping is not as configured", err.Error())
		}
	}
	if lim.Egress() {
		name := IfbName(conf.Name, req.ContainerID)
		ifb, err := host.Handle.LinkByName(name)
		if err != nil {
			return cni.NewError(cni.ErrInternal, "egress shaping is not as configured", "ifb "+name+" not found: "+err.Error())
		}
		if !ifbOwnedBy(ifb, ownerAlias(conf.Name, req.ContainerID, req.IfName)) {
			return cni.NewError(cni.ErrInternal, "egress shaping is not as configured",
				fmt.Sprintf("%s is a %s with alias %q, not this attachment's ifb", name, ifb.Type(), ifb.Attrs().Alias))
		}
		if ifb.Attrs().Flags&net.FlagUp == 0 {
			return cni.NewError(cni.ErrInternal, "egress shaping is not as configured", "ifb "+name+" is down")
		}
		p, _ := deriveTBF(lim.EgressRate, lim.EgressBurst)
		if err := checkTBF(host, ifb, p); err != nil {
			return cni.NewError(cni.ErrInternal, "egress shaping is not as configured", err.Error())
		}
		f, err := redirectFilter(host, veth, ifb.Attrs().Index)
		if err != nil {
			return cni.NewError(cni.ErrInternal, "cannot read the redirect filter", err.Error())
		}
		if f == nil {
			return cni.NewError(cni.ErrInternal, "egress shaping is not as configured",
				fmt.Sprintf("no filter on %s's ingress redirects to %s", veth.Attrs().Name, name))
		}
	}
	return nil
}

// GC removes the ifbs of this network whose attachment is not in
// cni.dev/valid-attachments (found by their owner alias).
func (Plugin) GC(ctx context.Context, req *skel.Request) error {
	valid := map[[2]string]bool{}
	for _, a := range req.NetConf.Attachments() {
		valid[[2]string{a.ContainerID, a.IfName}] = true
	}
	host, err := link.Current()
	if err != nil {
		return cni.NewError(cni.ErrInternal, "cannot open the host network namespace", err.Error())
	}
	defer host.Close()
	links, err := link.Dump(host.Handle.LinkList)
	if err != nil {
		return cni.NewError(cni.ErrInternal, "cannot list links", err.Error())
	}
	var errs []error
	for _, l := range links {
		if _, ok := l.(*netlink.Ifb); !ok {
			continue
		}
		network, cid, ifname, ok := parseAlias(l.Attrs().Alias)
		if !ok || network != req.NetConf.Name || valid[[2]string{cid, ifname}] {
			continue
		}
		if err := host.Handle.LinkDel(l); err != nil && !link.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("deleting stale ifb %s (%s): %w", l.Attrs().Name, l.Attrs().Alias, err))
		}
	}
	if len(errs) > 0 {
		return cni.NewError(cni.ErrInternal, "bandwidth GC could not remove every stale ifb", errors.Join(errs...).Error())
	}
	return nil
}
