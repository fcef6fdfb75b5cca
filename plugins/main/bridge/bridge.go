// Package bridge is the bridge plugin: each container gets a veth pair whose
// host end is a port of a Linux bridge (created on first use and left in
// place on DEL, as the reference does), with optional gateway addresses on
// the bridge, masquerade (nftables over netlink), hairpin, port isolation,
// VLANs, MAC spoof filtering (nftables bridge family) and IPv6 DAD control.
// Its configuration keys and results match the reference plugin's.
//
// ADD runs the IPAM plugin concurrently with the link work, waits for the
// host port with link notifications instead of sleeping, and undoes what it
// did (IPAM included) when it fails. Unlike the reference, the host end of
// the veth gets no IPv6 link-local address (addrgenmode none): a bridge port
// only switches frames, and each such address costs the host two IPv6
// routes, DAD and MLD traffic flooded to every port, and a longer route walk
// on every later interface removal. DEL is best effort and repeatable and
// works after the container's namespace is gone; CHECK verifies links,
// addresses, routes, masquerade and spoof-check rules; GC removes the
// masquerade and spoof-check entries and IPAM reservations of attachments
// that are no longer valid.
package bridge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

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
var Info = skel.Info{Name: "bridge", About: "knit bridge plugin: veth pairs on a Linux bridge, config-compatible with the reference"}

// PortUpTimeout bounds the wait for the host end of the veth to come up.
const PortUpTimeout = 3 * time.Second

var (
	_ skel.Plugin   = Plugin{}
	_ skel.GCer     = Plugin{}
	_ skel.Statuser = Plugin{}
)

func owner(req *skel.Request) nft.Owner {
	return nft.Owner{Network: req.NetConf.Name, ContainerID: req.ContainerID, IfName: req.IfName}
}

// undo collects compensating actions, run in reverse order on failure.
type undo []func()

func (u *undo) push(f func()) { *u = append(*u, f) }
func (u undo) run() {
	for i := len(u) - 1; i >= 0; i-- {
		u[i]()
	}
}

type ipamAnswer struct {
	res *cni.Result
	err error
}

// Add creates the attachment.
func (Plugin) Add(ctx context.Context, req *skel.Request) (_ *cni.Result, retErr error) {
	conf, err := parseConfig(req.Config, req.Args)
	if err != nil {
		return nil, err
	}
	host, err := link.Current()
	if err != nil {
		return nil, cni.NewError(cni.ErrInternal, "cannot open the host network namespace", err.Error())
	}
	defer host.Close()
	cont, err := openNetns(req.Netns)
	if err != nil {
		return nil, err
	}
	defer cont.Close()

	var cleanup undo
	defer func() {
		if retErr != nil {
			cleanup.run()
		}
	}()

	// IPAM runs (as a separate process) while we build the links.
	var ipamCh chan ipamAnswer
	if conf.hasIPAM() {
		ipamCh = make(chan ipamAnswer, 1)
		go func() {
			r, err := invoke.DelegateAdd(ctx, conf.IPAM.Type, req.Config, nil)
			ipamCh <- ipamAnswer{r, err}
		}()
		cleanup.push(func() {
			if ipamCh != nil {
				<-ipamCh // never leave the delegate running behind us
			}
			_ = invoke.DelegateDel(context.WithoutCancel(ctx), conf.IPAM.Type, req.Config, nil)
		})
	}

	br, created, err := link.EnsureBridge(host, link.Bridge{Name: conf.Bridge, MTU: conf.MTU, Promisc: conf.PromiscMode, VlanFiltering: conf.hasVlans()})
	if err != nil {
		return nil, linkErr("cannot set up bridge "+conf.Bridge, err)
	}
	if created {
		// A gateway bridge must not autoconfigure from router adverts.
		if _, err := sysctl.Set(sysctl.IfaceKey("ipv6", "conf", conf.Bridge, "accept_ra"), "0"); err != nil && !sysctl.IsNotExist(err) {
			return nil, cni.NewError(cni.ErrInternal, "cannot disable router advertisements on "+conf.Bridge, err.Error())
		}
	}

	// The host end becomes a port of the bridge as it is created.
	pair, err := link.CreateVeth(host, cont, link.Veth{ContainerName: req.IfName, MTU: conf.MTU, ContainerMAC: conf.mac, HostUp: true, HostNoLinkLocal: true, MasterIndex: br.Attrs().Index})
	if err != nil {
		return nil, linkErr("cannot create the veth pair", err)
	}
	cleanup.push(func() { _, _ = link.DeleteByName(cont, req.IfName) })
	if err := link.AttachPort(host, pair.Host, br, link.Port{Hairpin: conf.HairpinMode, Isolated: conf.PortIsolation}); err != nil {
		return nil, linkErr("cannot attach the host veth to the bridge", err)
	}
	if conf.hasVlans() {
		if err := link.SetPortVlans(host, pair.Host, conf.Vlan, conf.trunk, conf.PreserveDefaultVlan); err != nil {
			return nil, linkErr("cannot set the port's VLANs", err)
		}
	}
	contMAC := pair.Container.Attrs().HardwareAddr
	if conf.MacSpoofChk {
		if err := spoofAdd(owner(req), pair.Host.Attrs().Name, contMAC); err != nil {
			return nil, err
		}
		cleanup.push(func() { _ = spoofDel(owner(req)) })
	}

	res := &cni.Result{CNIVersion: req.Version}
	res.Interfaces = []*cni.Interface{
		{Name: br.Attrs().Name, Mac: br.Attrs().HardwareAddr.String()},
		{Name: pair.Host.Attrs().Name, Mac: pair.Host.Attrs().HardwareAddr.String()},
		{Name: req.IfName, Mac: contMAC.String(), Sandbox: req.Netns},
	}

	if conf.hasIPAM() {
		a := <-ipamCh
		ipamCh = nil
		if a.err != nil {
			return nil, a.err
		}
		if len(a.res.IPs) == 0 {
			return nil, cni.NewError(cni.ErrInvalidNetworkConfig, "IPAM plugin returned no IP configuration",
				"check the ipam section: bridge needs at least one range when ipam is given")
		}
		if err := fillGateways(conf, a.res); err != nil {
			return nil, err
		}
		for _, ip := range a.res.IPs {
			ip.Interface = cni.Int(2)
		}
		res.IPs, res.Routes, res.DNS = a.res.IPs, a.res.Routes, a.res.DNS

		dad := ipcfg.DADOff
		if conf.EnableDad {
			dad = ipcfg.DADEnhanced
		}
		opts := ipcfg.Options{Index: 2, DAD: dad, Sysctls: []sysctl.Setting{
			{Key: sysctl.IfaceKey("ipv4", "conf", req.IfName, "arp_notify"), Value: "1", Optional: true},
		}}
		if err := ipcfg.Configure(cont, pair.Container, res, opts); err != nil {
			return nil, cni.NewError(cni.ErrInternal, "cannot configure "+req.IfName+" in "+req.Netns, err.Error())
		}
		if conf.IsGateway {
			if err := setupGateway(host, conf, br, res.IPs); err != nil {
				return nil, err
			}
			if conf.IPMasq {
				m := nft.NewMasq()
				nets := masqNets(res.IPs)
				if err := m.Add(owner(req), nets); err != nil {
					return nil, cni.NewError(cni.ErrInternal, "cannot set up masquerading", err.Error())
				}
				cleanup.push(func() { _ = m.Del(owner(req), nets) })
			}
		}
	} else if !conf.DisableContainerInterface {
		if err := cont.Handle.LinkSetUp(pair.Container); err != nil {
			return nil, cni.NewError(cni.ErrInternal, "cannot set "+req.IfName+" up", err.Error())
		}
	}

	if !conf.DisableContainerInterface {
		hl, err := link.WaitOperUp(host, pair.Host.Attrs().Index, PortUpTimeout)
		if err != nil {
			return nil, cni.NewError(cni.ErrInternal, "bridge port in error state", err.Error())
		}
		res.Interfaces[1].Mac = hl.Attrs().HardwareAddr.String()
	}
	if !created {
		// An existing bridge may follow its ports' MACs: report its current one.
		if l, err := link.ByIndex(host, br.Attrs().Index); err == nil {
			res.Interfaces[0].Mac = l.Attrs().HardwareAddr.String()
		}
	}
	return res, nil
}

// openNetns opens CNI_NETNS with the CNI error a runtime expects.
func openNetns(path string) (*link.Namespace, error) {
	ns, err := link.Open(path)
	if err != nil {
		return nil, cni.NetNSError(path, err)
	}
	return ns, nil
}

// linkErr wraps a link-layer failure with the right CNI code.
func linkErr(msg string, err error) error {
	var ee *link.ExistsError
	switch {
	case errors.As(err, &ee):
		return cni.NewError(cni.ErrInvalidEnvironmentVariables, msg, err.Error())
	case errors.Is(err, link.ErrVlanFilteringUnsupported):
		return cni.NewError(cni.ErrUnsupportedField, msg, err.Error())
	}
	return cni.NewError(cni.ErrInternal, msg, err.Error())
}

// fillGateways gives every IP a gateway when the bridge is the gateway (the
// first address of the subnet unless IPAM chose one) and adds default
// routes for isDefaultGateway.
func fillGateways(conf *Config, res *cni.Result) error {
	if !conf.IsGateway {
		return nil
	}
	seen := map[bool]bool{}
	for _, ip := range res.IPs {
		if ip.Gateway == nil {
			ip.Gateway = firstHost(ip.Address)
		}
		v4 := ip.IsV4()
		if !conf.IsDefaultGateway || seen[v4] {
			continue
		}
		seen[v4] = true
		def := net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
		if !v4 {
			def = net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
		}
		exists := false
		for _, rt := range res.Routes {
			if rt.Dst.String() != def.String() {
				continue
			}
			if rt.GW != nil && !rt.GW.Equal(ip.Gateway) {
				return cni.NewError(cni.ErrInvalidNetworkConfig, "isDefaultGateway ineffective because IPAM sets default route via "+rt.GW.String(),
					"remove the default route from the ipam section or set isDefaultGateway to false")
			}
			exists = true
		}
		if !exists {
			res.Routes = append(res.Routes, &cni.Route{Dst: def, GW: ip.Gateway})
		}
	}
	return nil
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

// setupGateway puts each family's gateway address on the bridge (or the
// VLAN gateway port) and turns on forwarding for the families in use.
func setupGateway(host *link.Namespace, conf *Config, br netlink.Link, ips []*cni.IPConfig) error {
	gwLink := br
	if conf.Vlan != 0 {
		l, err := vlanGatewayPort(host, conf, br)
		if err != nil {
			return err
		}
		gwLink = l
	}
	v4, v6 := false, false
	for _, ip := range ips {
		if ip.Gateway == nil {
			continue
		}
		gw := net.IPNet{IP: ip.Gateway, Mask: ip.Address.Mask}
		if err := ensureAddr(host, gwLink, gw, conf.ForceAddress); err != nil {
			return err
		}
		if ip.IsV4() {
			v4 = true
		} else {
			v6 = true
		}
	}
	if err := sysctl.EnableForwarding(v4, v6); err != nil {
		return cni.NewError(cni.ErrInternal, "cannot enable IP forwarding", err.Error())
	}
	return nil
}

// ensureAddr puts gw on l unless it is already there. A different IPv4
// address (or an overlapping IPv6 one) is an error unless forceAddress,
// which replaces it.
func ensureAddr(host *link.Namespace, l netlink.Link, gw net.IPNet, force bool) error {
	family := netlink.FAMILY_V4
	if gw.IP.To4() == nil {
		family = netlink.FAMILY_V6
	}
	// Only l's addresses: a whole-namespace dump grows with every port.
	addrs, err := link.AddrsOf(host, l, family)
	if err != nil {
		return cni.NewError(cni.ErrInternal, "cannot list addresses of "+l.Attrs().Name, err.Error())
	}
	want := gw.String()
	for _, a := range addrs {
		if a.IPNet.String() == want {
			return nil
		}
		if family == netlink.FAMILY_V4 || a.IPNet.Contains(gw.IP) || gw.Contains(a.IP) {
			if !force {
				return cni.NewError(cni.ErrInvalidNetworkConfig, fmt.Sprintf("%q already has an IP address different from %v", l.Attrs().Name, want),
					fmt.Sprintf("it has %s: set forceAddress to replace it, or use another bridge", a.IPNet))
			}
			if err := host.Handle.AddrDel(l, &a); err != nil {
				return cni.NewError(cni.ErrInternal, fmt.Sprintf("cannot remove %s from %s", a.IPNet, l.Attrs().Name), err.Error())
			}
		}
	}
	a := &netlink.Addr{IPNet: &gw}
	if family == netlink.FAMILY_V6 {
		a.Flags = unix.IFA_F_NODAD // the gateway must answer at once
	}
	if err := host.Handle.AddrAdd(l, a); err != nil && !errors.Is(err, unix.EEXIST) {
		return cni.NewError(cni.ErrInternal, fmt.Sprintf("cannot add gateway address %s to %s", want, l.Attrs().Name), err.Error())
	}
	return nil
}

// vlanGatewayPort returns the "<bridge>.<vlan>" port that carries the
// gateway address of a VLAN: one end of a veth pair whose other end is an
// untagged member of the VLAN on the bridge (the reference's layout).
func vlanGatewayPort(host *link.Namespace, conf *Config, br netlink.Link) (netlink.Link, error) {
	name := fmt.Sprintf("%s.%d", conf.Bridge, conf.Vlan)
	if l, err := host.Handle.LinkByName(name); err == nil {
		return l, nil
	}
	pair, err := link.CreateVeth(host, host, link.Veth{ContainerName: name, MTU: conf.MTU, HostUp: true})
	if err != nil {
		return nil, linkErr("cannot create the VLAN gateway port "+name, err)
	}
	if err := link.AttachPort(host, pair.Host, br, link.Port{}); err != nil {
		return nil, linkErr("cannot attach the VLAN gateway port", err)
	}
	if err := link.SetPortVlans(host, pair.Host, conf.Vlan, nil, conf.PreserveDefaultVlan); err != nil {
		return nil, linkErr("cannot set the VLAN gateway port's VLAN", err)
	}
	if err := host.Handle.LinkSetUp(pair.Container); err != nil {
		return nil, cni.NewError(cni.ErrInternal, "cannot set "+name+" up", err.Error())
	}
	return pair.Container, nil
}

// masqNets are the container addresses with their subnets, as the
// masquerade backend wants them.
func masqNets(ips []*cni.IPConfig) []net.IPNet {
	var out []net.IPNet
	for _, ip := range ips {
		out = append(out, ip.Address)
	}
	return out
}

// Del removes the attachment: best effort, repeatable, and fine when the
// namespace or the interface is already gone. The IPAM release, the link
// deletion (the kernel takes a while to tear a veth down) and the nftables
// work run concurrently.
func (Plugin) Del(ctx context.Context, req *skel.Request) error {
	conf, err := parseConfig(req.Config, "")
	if err != nil {
		return err
	}
	var ipamErr chan error
	if conf.hasIPAM() {
		ipamErr = make(chan error, 1)
		go func() { ipamErr <- invoke.DelegateDel(ctx, conf.IPAM.Type, req.Config, nil) }()
	}
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
	if conf.MacSpoofChk {
		if err := spoofDel(owner(req)); err != nil {
			errs = append(errs, err)
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
	if ipamErr != nil {
		if err := <-ipamErr; err != nil {
			errs = append([]error{err}, errs...)
		}
	}
	return cni.FirstError(errs...)
}

// Status reports whether the IPAM plugin can serve ADD.
func (Plugin) Status(ctx context.Context, req *skel.Request) error {
	conf, err := parseConfig(req.Config, "")
	if err != nil {
		return err
	}
	if !conf.hasIPAM() {
		return nil
	}
	return invoke.DelegateStatus(ctx, conf.IPAM.Type, req.Config, nil)
}

// GC removes masquerade and spoof-check entries and (through the IPAM
// plugin) reservations of attachments not in cni.dev/valid-attachments.
func (Plugin) GC(ctx context.Context, req *skel.Request) error {
	conf, err := parseConfig(req.Config, "")
	if err != nil {
		return err
	}
	var keep []nft.Owner
	for _, a := range req.NetConf.Attachments() {
		keep = append(keep, nft.Owner{Network: req.NetConf.Name, ContainerID: a.ContainerID, IfName: a.IfName})
	}
	var errs []error
	if conf.hasIPAM() {
		if err := invoke.DelegateGC(ctx, conf.IPAM.Type, req.Config, nil); err != nil {
			errs = append(errs, err)
		}
	}
	// Entries are found by owner, so GC runs even if ipMasq or macspoofchk
	// was switched off since they were made.
	if err := nft.NewMasq().GC(req.NetConf.Name, keep); err != nil {
		errs = append(errs, cni.NewError(cni.ErrInternal, "masquerade GC failed", err.Error()))
	}
	if err := spoofGC(req.NetConf.Name, keep); err != nil {
		errs = append(errs, err)
	}
	return cni.FirstError(errs...)
}
