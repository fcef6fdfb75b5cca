// Package ptp is the ptp plugin: a routed point-to-point veth pair per
// container. The container gets its address with a /32 (/128) on-link route
// to the gateway and its subnet routed via the gateway; the host end carries
// the gateway address and a host route to the container, so every container
// is reached by routing, with no bridge. ipMasq masquerades the container's
// traffic leaving the host (nftables over netlink). Configuration keys and
// results match the reference plugin's.
//
// ADD runs the IPAM plugin concurrently with the veth creation and undoes
// everything if it fails; DEL is best effort, repeatable and works after the
// namespace is gone; CHECK verifies the links, addresses, routes and
// masquerade; GC removes masquerade entries and IPAM reservations of
// attachments that are no longer valid.
package ptp

import (
	"context"
	"encoding/json"
	"fmt"
	"net"

	"github.com/knit-cni/knit/internal/ipcfg"
	"github.com/knit-cni/knit/internal/link"
	"github.com/knit-cni/knit/internal/nft"
	"github.com/knit-cni/knit/internal/sysctl"
	"github.com/knit-cni/knit/pkg/cni"
	"github.com/knit-cni/knit/pkg/cni/invoke"
	"github.com/knit-cni/knit/pkg/cni/skel"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Plugin implements skel.Plugin, skel.GCer and skel.Statuser.
type Plugin struct{}

// Info describes the plugin for VERSION and the about banner.
var Info = skel.Info{Name: "ptp", About: "knit ptp plugin: routed point-to-point veth pairs, config-compatible with the reference"}

var (
	_ skel.Plugin   = Plugin{}
	_ skel.GCer     = Plugin{}
	_ skel.Statuser = Plugin{}
)

// Config is the ptp plugin's configuration.
type Config struct {
	cni.NetConf
	IPMasq        bool    `json:"ipMasq"`
	IPMasqBackend *string `json:"ipMasqBackend,omitempty"`
	MTU           int     `json:"mtu"`
}

func parseConfig(stdin []byte) (*Config, error) {
	c := &Config{}
	if err := json.Unmarshal(stdin, c); err != nil {
		return nil, cni.NewError(cni.ErrDecodingFailure, "failed to parse ptp network configuration", err.Error())
	}
	if c.IPAM.Type == "" {
		return nil, cni.NewError(cni.ErrInvalidNetworkConfig, "ptp needs an ipam section",
			"add e.g. \"ipam\": {\"type\": \"host-local\", \"subnet\": \"10.1.1.0/24\"}")
	}
	if c.MTU < 0 {
		return nil, cni.Errorf(cni.ErrInvalidNetworkConfig, "invalid mtu %d: use 0 for the kernel default or a positive value", c.MTU)
	}
	return c, nil
}

func owner(req *skel.Request) nft.Owner {
	return nft.Owner{Network: req.NetConf.Name, ContainerID: req.ContainerID, IfName: req.IfName}
}

type ipamAnswer struct {
	res *cni.Result
	err error
}

// Add creates the attachment.
func (Plugin) Add(ctx context.Context, req *skel.Request) (_ *cni.Result, retErr error) {
	conf, err := parseConfig(req.Config)
	if err != nil {
		return nil, err
	}
	host, err := link.Current()
	if err != nil {
		return nil, cni.NewError(cni.ErrInternal, "cannot open the host network namespace", err.Error())
	}
	defer host.Close()
	cont, err := link.Open(req.Netns)
	if err != nil {
		return nil, cni.NetNSError(req.Netns, err)
	}
	defer cont.Close()

	var undo []func()
	defer func() {
		if retErr != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()

	ipamCh := make(chan ipamAnswer, 1)
	go func() {
		r, err := invoke.DelegateAdd(ctx, conf.IPAM.Type, req.Config, nil)
		ipamCh <- ipamAnswer{r, err}
	}()
	ipamWaited := false
	undo = append(undo, func() {
		if !ipamWaited {
			<-ipamCh
		}
		_ = invoke.DelegateDel(context.WithoutCancel(ctx), conf.IPAM.Type, req.Config, nil)
	})

	pair, err := link.CreateVeth(host, cont, link.Veth{ContainerName: req.IfName, MTU: conf.MTU, HostUp: true})
	if err != nil {
		return nil, cni.NewError(cni.ErrInternal, "cannot create the veth pair", err.Error())
	}
	undo = append(undo, func() { _, _ = link.DeleteByName(cont, req.IfName) })

	a := <-ipamCh
	ipamWaited = true
	if a.err != nil {
		return nil, a.err
	}
	ipamRes := a.res
	if len(ipamRes.IPs) == 0 {
		return nil, cni.NewError(cni.ErrInvalidNetworkConfig, "IPAM plugin returned no IP configuration", "check the ipam section")
	}
	v4, v6 := false, false
	for _, ip := range ipamRes.IPs {
		ip.Interface = cni.Int(1)
		if ip.Gateway == nil {
			ip.Gateway = firstHost(ip.Address)
		}
		if ip.IsV4() {
			v4 = true
		} else {
			v6 = true
		}
	}
	if err := sysctl.EnableForwarding(v4, v6); err != nil {
		return nil, cni.NewError(cni.ErrInternal, "cannot enable IP forwarding", err.Error())
	}

	res := &cni.Result{
		CNIVersion: req.Version,
		Interfaces: []*cni.Interface{
			{Name: pair.Host.Attrs().Name, Mac: pair.Host.Attrs().HardwareAddr.String()},
			{Name: req.IfName, Mac: pair.Container.Attrs().HardwareAddr.String(), Sandbox: req.Netns},
		},
		IPs:    ipamRes.IPs,
		Routes: ipamRes.Routes,
		DNS:    ipamRes.DNS,
	}
	if !conf.DNS.IsEmpty() {
		res.DNS = conf.DNS
	}

	opts := ipcfg.Options{Index: 1, DAD: ipcfg.DADOff, NoPrefixRoute: true, LinkRoutes: containerRoutes(res.IPs)}
	if err := ipcfg.Configure(cont, pair.Container, res, opts); err != nil {
		return nil, cni.NewError(cni.ErrInternal, "cannot configure "+req.IfName+" in "+req.Netns, err.Error())
	}
	if err := setupHostVeth(host, pair.Host, res.IPs); err != nil {
		return nil, err
	}
	if conf.IPMasq {
		m := nft.NewMasq()
		nets := ipcfg.ContainerAddrs(res, req.IfName)
		if err := m.Add(owner(req), nets); err != nil {
			return nil, cni.NewError(cni.ErrInternal, "cannot set up masquerading", err.Error())
		}
		undo = append(undo, func() { _ = m.Del(owner(req), nets) })
	}
	return res, nil
}

func firstHost(n net.IPNet) net.IP {
	ip := n.IP.Mask(n.Mask)
	out := make(net.IP, len(ip))
	copy(out, ip)
	for i := len(out) - 1; i >= 0; i-- {
		out[i]++
		if out[i] != 0 {
			break
		}
	}
	return out
}

func hostMask(ip net.IP) net.IPMask {
	if ip.To4() != nil {
		return net.CIDRMask(32, 32)
	}
	return net.CIDRMask(128, 128)
}

func to16or4(ip net.IP) net.IP {
	if v4 := ip.To4(); v4 != nil {
		return v4
	}
	return ip
}

// containerRoutes are the routes that make the gateway reachable from the
// container: the gateway on-link as a host route, and the subnet via the
// gateway (instead of the kernel's on-link prefix route).
func containerRoutes(ips []*cni.IPConfig) []netlink.Route {
	var out []netlink.Route
	for _, ip := range ips {
		gw := to16or4(ip.Gateway)
		src := to16or4(ip.Address.IP)
		out = append(out,
			netlink.Route{Dst: &net.IPNet{IP: gw, Mask: hostMask(gw)}, Scope: netlink.SCOPE_LINK, Src: src},
			netlink.Route{Dst: &net.IPNet{IP: src.Mask(ip.Address.Mask), Mask: ip.Address.Mask}, Gw: gw, Src: src})
	}
	return out
}

// setupHostVeth gives the host end the gateway addresses (as /32 or /128)
// and a host route to each container address.
func setupHostVeth(host *link.Namespace, hv netlink.Link, ips []*cni.IPConfig) error {
	for _, ip := range ips {
		gw := to16or4(ip.Gateway)
		a := &netlink.Addr{IPNet: &net.IPNet{IP: gw, Mask: hostMask(gw)}, Scope: int(netlink.SCOPE_LINK)}
		if gw.To4() == nil {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := host.Handle.AddrAdd(hv, a); err != nil {
			return cni.NewError(cni.ErrInternal, fmt.Sprintf("cannot add gateway address %s to %s", a.IPNet, hv.Attrs().Name), err.Error())
		}
		dst := to16or4(ip.Address.IP)
		r := &netlink.Route{LinkIndex: hv.Attrs().Index, Dst: &net.IPNet{IP: dst, Mask: hostMask(dst)}, Scope: netlink.SCOPE_LINK}
		if err := host.Handle.RouteAdd(r); err != nil {
			return cni.NewError(cni.ErrInternal, fmt.Sprintf("cannot add host route to %s via %s", r.Dst, hv.Attrs().Name), err.Error())
		}
	}
	return nil
}

// Del removes the attachment: best effort, repeatable, and fine when the
// namespace or the interface is already gone. IPAM release, link teardown
// and masquerade removal run concurrently.
func (Plugin) Del(ctx context.Context, req *skel.Request) error {
	conf, err := parseConfig(req.Config)
	if err != nil {
		return err
	}
	ipamErr := make(chan error, 1)
	go func() { ipamErr <- invoke.DelegateDel(ctx, conf.IPAM.Type, req.Config, nil) }()
	waitLink := link.DeleteContainerLinkAsync(req.Netns, req.IfName)
	var errs []error
	var masq *nft.Masq
	if conf.IPMasq {
		// The ADD result names the addresses. Without it the masquerade
		// layer finds them by owner (one dump of the network's sets)
		// rather than waiting for the veth teardown to report them.
		addrs := ipcfg.ContainerAddrs(req.PrevResult, req.IfName)
		masq = nft.NewMasq()
		if err := masq.Del(owner(req), addrs); err != nil {
			errs = append(errs, cni.NewError(cni.ErrInternal, "cannot remove masquerading", err.Error()))
		}
	}
	if _, err := waitLink(); err != nil {
		errs = append(errs, cni.NewError(cni.ErrInternal, "cannot delete "+req.IfName+" in "+req.Netns, err.Error()))
	}
	// Release the nftables sockets only now. During the veth teardown the
	// release would hold nf_tables' commit mutex over an RCU grace period,
	// which the interface's unregistration waits for (DEL ~14 ms slower,
	// measured); after it, that grace period has usually passed and the
	// release is quick. A closer (nft.HandOff at exit) would instead
	// release them during the runtime's next operation, slowing that.
	if masq != nil {
		masq.Close()
	}
	if err := <-ipamErr; err != nil {
		errs = append([]error{err}, errs...)
	}
	return cni.FirstError(errs...)
}

// Status reports whether the IPAM plugin can serve ADD.
func (Plugin) Status(ctx context.Context, req *skel.Request) error {
	conf, err := parseConfig(req.Config)
	if err != nil {
		return err
	}
	return invoke.DelegateStatus(ctx, conf.IPAM.Type, req.Config, nil)
}

// GC removes masquerade entries and (through the IPAM plugin) reservations
// of attachments not in cni.dev/valid-attachments.
func (Plugin) GC(ctx context.Context, req *skel.Request) error {
	conf, err := parseConfig(req.Config)
	if err != nil {
		return err
	}
	var keep []nft.Owner
	for _, a := range req.NetConf.Attachments() {
		keep = append(keep, nft.Owner{Network: req.NetConf.Name, ContainerID: a.ContainerID, IfName: a.IfName})
	}
	var errs []error
	if err := invoke.DelegateGC(ctx, conf.IPAM.Type, req.Config, nil); err != nil {
		errs = append(errs, err)
	}
	if err := nft.NewMasq().GC(req.NetConf.Name, keep); err != nil {
		errs = append(errs, cni.NewError(cni.ErrInternal, "masquerade GC failed", err.Error()))
	}
	return cni.FirstError(errs...)
}

// Check verifies the attachment in prevResult is intact.
func (Plugin) Check(ctx context.Context, req *skel.Request) error {
	conf, err := parseConfig(req.Config)
	if err != nil {
		return err
	}
	if err := invoke.DelegateCheck(ctx, conf.IPAM.Type, req.Config, nil); err != nil {
		return err
	}
	prev := req.PrevResult
	if prev == nil {
		return cni.NewError(cni.ErrInvalidNetworkConfig, "required prevResult missing",
			"CHECK needs the ADD result as prevResult; the runtime supplies it from its cache")
	}
	idx := ipcfg.ContainerIndex(prev, req.IfName)
	if idx < 0 {
		return cni.NewError(cni.ErrInternal, "prevResult has no interface "+req.IfName+" in a sandbox", "the result does not describe this attachment")
	}
	host, err := link.Current()
	if err != nil {
		return cni.NewError(cni.ErrInternal, "cannot open the host network namespace", err.Error())
	}
	defer host.Close()
	cont, err := link.Open(req.Netns)
	if err != nil {
		return cni.NetNSError(req.Netns, err)
	}
	defer cont.Close()

	cl, err := cont.Handle.LinkByName(req.IfName)
	if err != nil {
		return cni.NewError(cni.ErrInternal, fmt.Sprintf("interface %s not found in %s", req.IfName, req.Netns), err.Error())
	}
	if _, ok := cl.(*netlink.Veth); !ok {
		return cni.NewError(cni.ErrInternal, req.IfName+" is not a veth", "it is a "+cl.Type())
	}
	if m := prev.Interfaces[idx].Mac; m != "" && m != cl.Attrs().HardwareAddr.String() {
		return cni.NewError(cni.ErrInternal, "interface "+req.IfName+" has the wrong MAC",
			fmt.Sprintf("it has %s, the result says %s", cl.Attrs().HardwareAddr, m))
	}
	hv, err := link.Peer(host, cl)
	if err != nil {
		return cni.NewError(cni.ErrInternal, "host end of "+req.IfName+" not found", err.Error())
	}
	ips := ipcfg.IPsFor(prev, idx)
	if err := ipcfg.CheckAddresses(cont, cl, ips); err != nil {
		return cni.NewError(cni.ErrInternal, "address check failed", err.Error())
	}
	if err := ipcfg.CheckRoutes(cont, cl, prev.Routes, ips); err != nil {
		return cni.NewError(cni.ErrInternal, "route check failed", err.Error())
	}
	for _, r := range containerRoutes(ips) {
		r.LinkIndex = cl.Attrs().Index
		if err := ipcfg.CheckRoute(cont, r); err != nil {
			return cni.NewError(cni.ErrInternal, "route check failed", err.Error())
		}
	}
	for _, ip := range ips {
		dst := to16or4(ip.Address.IP)
		want := netlink.Route{LinkIndex: hv.Attrs().Index, Dst: &net.IPNet{IP: dst, Mask: hostMask(dst)}}
		if err := ipcfg.CheckRoute(host, want); err != nil {
			return cni.NewError(cni.ErrInternal, "host route check failed", err.Error())
		}
	}
	if conf.IPMasq {
		if err := nft.NewMasq().Check(owner(req), ipcfg.ContainerAddrs(prev, req.IfName)); err != nil {
			return cni.NewError(cni.ErrInternal, "masquerade check failed", err.Error())
		}
	}
	return nil
}
