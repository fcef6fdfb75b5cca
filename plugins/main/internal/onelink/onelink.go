// Package onelink is the flow shared by the plugins that give a container
// exactly one link of their own making — macvlan, ipvlan, vlan and dummy:
// find the parent link, create the link in the container, get addresses
// (from the IPAM plugin or, for chained use, from prevResult), configure
// the link and report it as interface 0; DEL, CHECK, GC and STATUS with the
// IPAM plugin's part forwarded to it.
//
// Each plugin keeps its own config parsing and the one function that builds
// its kind of link; everything else is here, written once.
package onelink

import (
	"context"
	"errors"
	"fmt"

	"github.com/knit-cni/knit/internal/ipcfg"
	"github.com/knit-cni/knit/internal/link"
	"github.com/knit-cni/knit/internal/sysctl"
	"github.com/knit-cni/knit/pkg/cni"
	"github.com/knit-cni/knit/pkg/cni/invoke"
	"github.com/knit-cni/knit/pkg/cni/skel"
	"github.com/vishvananda/netlink"
)

// IPAMPolicy says where a plugin's addresses come from.
type IPAMPolicy int

const (
	// IPAMOptional: the IPAM plugin when configured, otherwise none (the
	// link is only set up, a layer-2 attachment). macvlan.
	IPAMOptional IPAMPolicy = iota
	// IPAMOrPrevResult: the IPAM plugin when configured, otherwise the IPs
	// of prevResult (chained use); one of the two is required. ipvlan.
	IPAMOrPrevResult
	// IPAMRequired: an ipam section is mandatory. vlan, dummy.
	IPAMRequired
)

// Spec describes one ADD to the shared flow.
type Spec struct {
	// Kind names the plugin in messages ("macvlan").
	Kind string
	// Policy says where addresses come from.
	Policy IPAMPolicy
	// Sysctls are written in the container for the new link (its name is
	// already CNI_IFNAME) before addresses are added.
	Sysctls []sysctl.Setting
	// Create makes the link in the container namespace under CNI_IFNAME
	// (normally with link.CreateChild) and returns it.
	Create func(cont *link.Namespace) (netlink.Link, error)
}

// Attachment is one invocation's view of the host and container namespaces.
type Attachment struct {
	Req  *skel.Request
	Host *link.Namespace
	Cont *link.Namespace
}

// Open opens the plugin's own namespace and CNI_NETNS.
func Open(req *skel.Request) (*Attachment, error) {
	host, err := link.Current()
	if err != nil {
		return nil, cni.NewError(cni.ErrInternal, "cannot open the host network namespace", err.Error())
	}
	cont, err := link.Open(req.Netns)
	if err != nil {
		host.Close()
		return nil, cni.NetNSError(req.Netns, err)
	}
	return &Attachment{Req: req, Host: host, Cont: cont}, nil
}

// Close releases both namespaces.
func (a *Attachment) Close() {
	a.Host.Close()
	a.Cont.Close()
}

// Parent finds the parent (master) link: name in the host namespace, or in
// the container's when inContainer (linkInContainer); an empty name means
// the interface of that namespace's default route. It returns the
// namespace the parent is in and the parent.
func (a *Attachment) Parent(name string, inContainer bool) (*link.Namespace, netlink.Link, error) {
	ns := a.Host
	if inContainer {
		ns = a.Cont
	}
	if name == "" {
		l, err := link.DefaultRouteLink(ns)
		if err != nil {
			if errors.Is(err, link.ErrNoDefaultRoute) {
				return nil, nil, cni.NewError(cni.ErrInvalidNetworkConfig, "no master interface given and none can be derived",
					err.Error()+`: set "master" to the interface to attach to`)
			}
			return nil, nil, cni.NewError(cni.ErrInternal, "cannot find the default route's interface", err.Error())
		}
		return ns, l, nil
	}
	l, err := link.LinkIn(ns, name)
	if err != nil {
		if link.IsNotFound(err) {
			hint := `: check "master"`
			if !inContainer {
				hint += ` (set "linkInContainer" if it lives in the container's namespace)`
			}
			return nil, nil, cni.NewError(cni.ErrInvalidNetworkConfig, fmt.Sprintf("master interface %q not found", name), err.Error()+hint)
		}
		return nil, nil, cni.NewError(cni.ErrInternal, fmt.Sprintf("cannot look up master interface %q", name), err.Error())
	}
	return ns, l, nil
}

// CheckParent verifies the container link l is a child of parent, which
// lives in parentNS (the host or the container): the same ifindex, in the
// same namespace (ifindexes repeat across namespaces, so the link's
// link-netns id must be the parent namespace's, or absent when the parent
// is in the container).
func (a *Attachment) CheckParent(l netlink.Link, parentNS *link.Namespace, parent netlink.Link) error {
	name, pname := l.Attrs().Name, parent.Attrs().Name
	if l.Attrs().ParentIndex != parent.Attrs().Index {
		return CheckErr(fmt.Sprintf("%s is not a child of master %s", name, pname),
			fmt.Sprintf("its parent has ifindex %d, %s has %d", l.Attrs().ParentIndex, pname, parent.Attrs().Index))
	}
	nsid := l.Attrs().NetNsID
	if parentNS == a.Cont {
		if nsid >= 0 {
			return CheckErr(fmt.Sprintf("%s is not a child of master %s in the container", name, pname),
				fmt.Sprintf("its parent is in another namespace (netns id %d)", nsid))
		}
		return nil
	}
	want, err := a.Cont.Handle.GetNetNsIdByFd(parentNS.Fd())
	if err != nil {
		return cni.NewError(cni.ErrInternal, "cannot read the host namespace's id as the container sees it", err.Error())
	}
	if nsid < 0 || nsid != want {
		return CheckErr(fmt.Sprintf("%s is not a child of master %s in the host namespace", name, pname),
			fmt.Sprintf("its parent's namespace id is %d, the host's %d", nsid, want))
	}
	return nil
}

// CheckMTU refuses an MTU that is negative or above the parent's (0 means
// inherit the parent's).
func CheckMTU(mtu int, parent netlink.Link) error {
	pm := parent.Attrs().MTU
	if mtu < 0 || mtu > pm {
		return cni.Errorf(cni.ErrInvalidNetworkConfig, "invalid MTU %d, must be [0, master MTU(%d)]: lower mtu or raise %s's MTU",
			mtu, pm, parent.Attrs().Name)
	}
	return nil
}

// CheckPolicy refuses an ADD whose addresses have no source under policy,
// before anything is created.
func CheckPolicy(req *skel.Request, policy IPAMPolicy, kind string) error {
	if req.NetConf.IPAM.Type != "" {
		return nil
	}
	switch policy {
	case IPAMRequired:
		return cni.NewError(cni.ErrInvalidNetworkConfig, kind+" needs an ipam section",
			`add "ipam" (for example {"type":"host-local","subnet":"10.1.2.0/24"}): a `+kind+" interface without addresses is useless")
	case IPAMOrPrevResult:
		if req.PrevResult == nil || len(req.PrevResult.IPs) == 0 {
			return cni.NewError(cni.ErrInvalidNetworkConfig, kind+" needs an ipam section or, chained, a prevResult with IPs",
				`add "ipam" or put `+kind+" after a plugin whose result has addresses")
		}
	}
	return nil
}

// Add creates the link with spec.Create, gets its addresses, configures it
// and returns the result: interfaces [the link, with sandbox], every IP on
// interface 0. On failure everything it did is undone, the IPAM
// reservation included. The config's dns, when set, replaces the IPAM
// plugin's.
func (a *Attachment) Add(ctx context.Context, spec Spec) (_ *cni.Result, retErr error) {
	req := a.Req
	if err := CheckPolicy(req, spec.Policy, spec.Kind); err != nil {
		return nil, err
	}
	l, err := spec.Create(a.Cont)
	if err != nil {
		return nil, LinkErr("cannot create the "+spec.Kind+" interface "+req.IfName, err)
	}
	ipamType := req.NetConf.IPAM.Type
	ipamDone := false
	defer func() {
		if retErr == nil {
			return
		}
		_ = a.Cont.Handle.LinkDel(l)
		if ipamDone {
			_ = invoke.DelegateDel(context.WithoutCancel(ctx), ipamType, req.Config, nil)
		}
	}()

	res := &cni.Result{CNIVersion: req.Version}
	switch {
	case ipamType != "":
		r, err := invoke.DelegateAdd(ctx, ipamType, req.Config, nil)
		if err != nil {
			return nil, err
		}
		ipamDone = true
		if len(r.IPs) == 0 {
			return nil, cni.NewError(cni.ErrInvalidNetworkConfig, "IPAM plugin returned missing IP config",
				"check the ipam section: it must give at least one address")
		}
		res.IPs, res.Routes, res.DNS = r.IPs, r.Routes, r.DNS
	case spec.Policy == IPAMOrPrevResult:
		prev := req.PrevResult
		res.IPs, res.Routes, res.DNS = prev.IPs, prev.Routes, prev.DNS
	}
	if !req.NetConf.DNS.IsEmpty() {
		res.DNS = req.NetConf.DNS
	}
	res.Interfaces = []*cni.Interface{{Name: req.IfName, Mac: l.Attrs().HardwareAddr.String(), Sandbox: req.Netns}}
	for _, ip := range res.IPs {
		ip.Interface = cni.Int(0)
	}

	if len(res.IPs) == 0 {
		if err := a.Cont.Handle.LinkSetUp(l); err != nil {
			return nil, cni.NewError(cni.ErrInternal, "cannot set "+req.IfName+" up", err.Error())
		}
		return res, nil
	}
	opts := ipcfg.Options{Index: 0, Sysctls: spec.Sysctls}
	if err := ipcfg.Configure(a.Cont, l, res, opts); err != nil {
		return nil, cni.NewError(cni.ErrInternal, "cannot configure "+req.IfName+" in "+req.Netns, err.Error())
	}
	return res, nil
}

// LinkErr wraps a link-layer failure with the right CNI code: an error
// that already is a CNI error keeps its code, a name clash in the
// container is the runtime's to fix.
func LinkErr(msg string, err error) error {
	var ce *cni.Error
	if errors.As(err, &ce) {
		return err
	}
	var ee *link.ExistsError
	if errors.As(err, &ee) {
		return cni.NewError(cni.ErrInvalidEnvironmentVariables, msg, err.Error())
	}
	return cni.NewError(cni.ErrInternal, msg, err.Error())
}

// Del removes the attachment: the IPAM reservation and the container's
// link, concurrently (the IPAM plugin is a separate process; the kernel
// takes a while to unregister a device). It is best effort and repeatable:
// a namespace or link that is gone is fine, and the link is deleted even
// when the IPAM plugin fails (whose error is then reported first).
func Del(ctx context.Context, req *skel.Request) error {
	var ipamErr chan error
	if t := req.NetConf.IPAM.Type; t != "" {
		ipamErr = make(chan error, 1)
		go func() { ipamErr <- invoke.DelegateDel(ctx, t, req.Config, nil) }()
	}
	var errs []error
	if req.Netns != "" {
		if _, err := link.DeleteContainerLink(req.Netns, req.IfName); err != nil {
			errs = append(errs, cni.NewError(cni.ErrInternal, "cannot delete "+req.IfName+" in "+req.Netns, err.Error()))
		}
	}
	if ipamErr != nil {
		if err := <-ipamErr; err != nil {
			errs = append([]error{err}, errs...)
		}
	}
	return cni.FirstError(errs...)
}

// Verify checks the container's link is still what ADD made (its kind,
// mode, parent…); a failure says what differs.
type Verify func(l netlink.Link) error

// Check verifies the attachment prevResult describes: the IPAM plugin's
// CHECK, the link (by verify), its MAC, addresses and routes.
func (a *Attachment) Check(ctx context.Context, verify Verify) error {
	req := a.Req
	if t := req.NetConf.IPAM.Type; t != "" {
		if err := invoke.DelegateCheck(ctx, t, req.Config, nil); err != nil {
			return err
		}
	}
	prev := req.PrevResult
	if prev == nil {
		return cni.NewError(cni.ErrInvalidNetworkConfig, "required prevResult missing",
			"CHECK needs the ADD result as prevResult; the runtime supplies it from its cache")
	}
	idx := -1
	for i, ifc := range prev.Interfaces {
		if ifc.Name == req.IfName && ifc.Sandbox == req.Netns {
			idx = i
		}
	}
	if idx < 0 {
		return CheckErr("prevResult has no interface "+req.IfName+" in sandbox "+req.Netns,
			"the result does not describe this attachment (was it made in another namespace?)")
	}
	want := prev.Interfaces[idx]
	l, err := a.Cont.Handle.LinkByName(req.IfName)
	if err != nil {
		return CheckErr(fmt.Sprintf("interface %s not found in %s", req.IfName, req.Netns), err.Error())
	}
	if err := verify(l); err != nil {
		return err
	}
	if want.Mac != "" && want.Mac != l.Attrs().HardwareAddr.String() {
		return CheckErr("interface "+req.IfName+" has the wrong MAC",
			fmt.Sprintf("it has %s, the result says %s", l.Attrs().HardwareAddr, want.Mac))
	}
	ips := ipcfg.IPsFor(prev, idx)
	if err := ipcfg.CheckAddresses(a.Cont, l, ips); err != nil {
		return CheckErr("address check failed", err.Error())
	}
	if err := ipcfg.CheckRoutes(a.Cont, l, prev.Routes, ips); err != nil {
		return CheckErr("route check failed", err.Error())
	}
	return nil
}

// CheckErr is a CHECK failure: something ADD made is gone or changed.
func CheckErr(msg, details string) error {
	return cni.NewError(cni.ErrInternal, msg, details)
}

// Status reports whether the IPAM plugin (if any) can serve ADD.
func Status(ctx context.Context, req *skel.Request) error {
	if t := req.NetConf.IPAM.Type; t != "" {
		return invoke.DelegateStatus(ctx, t, req.Config, nil)
	}
	return nil
}

// GC forwards GC to the IPAM plugin (if any), which releases the
// reservations of attachments not in cni.dev/valid-attachments. The links
// themselves live in container namespaces and go with them.
func GC(ctx context.Context, req *skel.Request) error {
	if t := req.NetConf.IPAM.Type; t != "" {
		return invoke.DelegateGC(ctx, t, req.Config, nil)
	}
	return nil
}
