// Package hostdevice is the host-device plugin: it moves an existing host
// interface — chosen by name, MAC, sysfs kernel path, PCI address or the
// runtime's deviceID (PCI or auxiliary-bus id) — into the container under
// CNI_IFNAME, and gives it back on DEL. Configuration keys and results
// match the reference plugin's.
//
// The device travels through a temporary network namespace, where it is
// renamed and its original name written into its alias (as the reference
// does), so the host never sees it half-renamed and udev or
// NetworkManager cannot race the rename. Unlike the reference, ADD also
// records the device's host MTU, addresses, alias and up state under
// dataDir (default /run/knit/host-device), and DEL restores them along
// with the name. PCI devices bound to a userspace (DPDK) driver have no
// netdev: they are reported, not moved.
//
// DEL is best effort and repeatable; when the container's namespace is
// gone (a physical device falls back to the host by itself) it restores
// the device it finds on the host. GC does the same for attachments that
// are no longer valid and forwards GC to the IPAM plugin; STATUS forwards
// to the IPAM plugin.
package hostdevice

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/knit-cni/knit/internal/ipcfg"
	"github.com/knit-cni/knit/internal/link"
	"github.com/knit-cni/knit/internal/netns"
	"github.com/knit-cni/knit/pkg/cni"
	"github.com/knit-cni/knit/pkg/cni/invoke"
	"github.com/knit-cni/knit/pkg/cni/skel"
	"github.com/knit-cni/knit/plugins/main/internal/onelink"
	"github.com/vishvananda/netlink"
)

// Plugin implements skel.Plugin, skel.GCer and skel.Statuser.
type Plugin struct{}

// Info describes the plugin for VERSION and the about banner.
var Info = skel.Info{Name: "host-device", About: "knit host-device plugin: moves a host interface into the container and back, config-compatible with the reference"}

var (
	_ skel.Plugin   = Plugin{}
	_ skel.GCer     = Plugin{}
	_ skel.Statuser = Plugin{}
)

// usesPCI reports whether the device is chosen by PCI address (the
// reference's precedence: device, hwaddr, kernelpath, then PCI).
func (c *Config) usesPCI() bool {
	return c.Device == "" && c.HWAddr == "" && c.KernelPath == "" && c.PCIBusID != ""
}

// Add moves the device into the container and configures it.
func (Plugin) Add(ctx context.Context, req *skel.Request) (_ *cni.Result, retErr error) {
	conf, err := parseConfig(req.Config)
	if err != nil {
		return nil, err
	}
	a, err := onelink.Open(req)
	if err != nil {
		return nil, err
	}
	defer a.Close()
	st := store{dir: conf.DataDir}

	if conf.usesPCI() {
		dpdk, drv, err := isDPDK(conf.PCIBusID)
		if err != nil {
			return nil, cni.NewError(cni.ErrInvalidNetworkConfig, "cannot use "+conf.selector(), err.Error())
		}
		if dpdk {
			slog.Debug("PCI device is bound to a userspace driver; not moving it", "pci", conf.PCIBusID, "driver", drv)
			return dpdkResult(ctx, req, conf)
		}
	}

	hostDev, err := findDevice(a.Host, conf)
	if err != nil {
		return nil, err
	}
	if _, err := a.Cont.Handle.LinkByName(req.IfName); err == nil {
		return nil, onelink.LinkErr("cannot move "+hostDev.Attrs().Name+" into the container", &link.ExistsError{Name: req.IfName, Path: req.Netns})
	}
	rec, err := capture(a.Host, hostDev)
	if err != nil {
		return nil, cni.NewError(cni.ErrInternal, "cannot read the state of "+hostDev.Attrs().Name, err.Error())
	}
	rec.Network, rec.ContainerID, rec.IfName, rec.Netns = req.NetConf.Name, req.ContainerID, req.IfName, req.Netns
	if err := st.save(rec); err != nil {
		return nil, cni.NewError(cni.ErrIOFailure, "cannot record the host state of "+rec.Name, err.Error()+": check dataDir")
	}
	defer func() {
		if retErr != nil {
			_ = st.remove(rec.Network, rec.ContainerID, rec.IfName)
		}
	}()

	alias := rec.Name
	cl, err := link.MoveVia(a.Host, a.Cont, hostDev, link.Transit{Name: req.IfName, Alias: &alias})
	if err != nil {
		return nil, onelink.LinkErr(fmt.Sprintf("cannot move %s into %s as %s", rec.Name, req.Netns, req.IfName), err)
	}
	ipamDone := false
	defer func() {
		if retErr == nil {
			return
		}
		if ipamDone {
			_ = invoke.DelegateDel(context.WithoutCancel(ctx), conf.IPAM.Type, req.Config, nil)
		}
		if l, err := a.Cont.Handle.LinkByIndex(cl.Attrs().Index); err == nil {
			if err := moveOut(a.Host, a.Cont, l, rec); err != nil {
				slog.Error("could not return the device to the host after a failed ADD", "device", rec.Name, "error", err)
			}
		}
	}()

	res := &cni.Result{CNIVersion: req.Version}
	res.Interfaces = []*cni.Interface{{Name: req.IfName, Mac: cl.Attrs().HardwareAddr.String(), Sandbox: req.Netns}}
	if conf.hasIPAM() {
		r, err := invoke.DelegateAdd(ctx, conf.IPAM.Type, req.Config, nil)
		if err != nil {
			return nil, err
		}
		ipamDone = true
		if len(r.IPs) == 0 {
			return nil, cni.NewError(cni.ErrInvalidNetworkConfig, "IPAM plugin returned missing IP config",
				"check the ipam section: it must give at least one address")
		}
		res.IPs, res.Routes, res.DNS = r.IPs, r.Routes, r.DNS
		for _, ip := range res.IPs {
			ip.Interface = cni.Int(0)
		}
		if err := ipcfg.Configure(a.Cont, cl, res, ipcfg.Options{Index: 0}); err != nil {
			return nil, cni.NewError(cni.ErrInternal, "cannot configure "+req.IfName+" in "+req.Netns, err.Error())
		}
	} else if err := a.Cont.Handle.LinkSetUp(cl); err != nil {
		return nil, cni.NewError(cni.ErrInternal, "cannot set "+req.IfName+" up", err.Error())
	}
	if !conf.DNS.IsEmpty() {
		res.DNS = conf.DNS
	}
	return res, nil
}

// dpdkResult answers ADD for a device bound to a userspace driver: nothing
// moves; the result names the PCI device and carries the IPAM plugin's
// addresses (if any) for the application that drives it.
func dpdkResult(ctx context.Context, req *skel.Request, conf *Config) (*cni.Result, error) {
	res := &cni.Result{CNIVersion: req.Version}
	res.Interfaces = []*cni.Interface{{Name: req.IfName, PciID: conf.PCIBusID}}
	if conf.hasIPAM() {
		r, err := invoke.DelegateAdd(ctx, conf.IPAM.Type, req.Config, nil)
		if err != nil {
			return nil, err
		}
		res.IPs, res.Routes, res.DNS = r.IPs, r.Routes, r.DNS
		for _, ip := range res.IPs {
			ip.Interface = cni.Int(0)
		}
	}
	if !conf.DNS.IsEmpty() {
		res.DNS = conf.DNS
	}
	return res, nil
}

// findDevice finds the configured device in the host namespace.
func findDevice(host *link.Namespace, conf *Config) (netlink.Link, error) {
	notFound := func(details string) error {
		return cni.NewError(cni.ErrInvalidNetworkConfig, "failed to find host device: "+conf.selector(),
			details+" (is it attached to another container already?)")
	}
	var names []string
	switch {
	case conf.Device != "":
		names = []string{conf.Device}
	case conf.HWAddr != "":
		links, err := link.Dump(host.Handle.LinkList)
		if err != nil {
			return nil, cni.NewError(cni.ErrInternal, "cannot list host interfaces", err.Error())
		}
		for _, l := range links {
			if l.Attrs().HardwareAddr.String() == conf.hwaddr.String() {
				return l, nil
			}
		}
		return nil, notFound("no interface in the host namespace has MAC " + conf.hwaddr.String())
	case conf.KernelPath != "":
		ns, err := kernelPathNetdevs(conf.KernelPath)
		if err != nil {
			return nil, notFound(err.Error())
		}
		names = ns
	case conf.PCIBusID != "":
		ns, err := pciNetdevs(conf.PCIBusID)
		if err != nil {
			return nil, notFound(err.Error())
		}
		names = ns
	default:
		ns, err := auxNetdevs(conf.auxID)
		if err != nil {
			return nil, notFound(err.Error())
		}
		names = ns
	}
	for _, n := range names {
		l, err := host.Handle.LinkByName(n)
		if err == nil {
			return l, nil
		}
		if !link.IsNotFound(err) {
			return nil, cni.NewError(cni.ErrInternal, "cannot look up host interface "+n, err.Error())
		}
	}
	return nil, notFound(fmt.Sprintf("no interface named %v in the host namespace", names))
}

// moveOut returns the container's device l to the host under its original
// name (from rec, else from its alias) and, with a record, restores its
// alias, MTU, addresses and up state.
func moveOut(host, cont *link.Namespace, l netlink.Link, rec *record) error {
	name := l.Attrs().Alias
	t := link.Transit{Name: name}
	if rec != nil {
		t = link.Transit{Name: rec.Name, Alias: &rec.Alias, MTU: rec.MTU}
	}
	if t.Name == "" {
		return fmt.Errorf("%s has no alias naming its host interface and no record of it exists: it was not moved in by host-device", l.Attrs().Name)
	}
	hl, err := link.MoveVia(cont, host, l, t)
	if err != nil {
		return err
	}
	if rec != nil {
		return restoreAddrs(host, hl, rec)
	}
	return nil
}

// recoverOnHost restores a device that is already back in the host
// namespace (its container's namespace died, or an earlier DEL stopped
// half way): found by MAC or by the alias holding its name, it gets its
// name, alias, MTU, addresses and up state back. A device that is nowhere
// to be found is left alone.
func recoverOnHost(host *link.Namespace, rec *record) error {
	links, err := link.Dump(host.Handle.LinkList)
	if err != nil {
		return fmt.Errorf("listing host interfaces: %w", err)
	}
	var l netlink.Link
	for _, c := range links {
		a := c.Attrs()
		if a.HardwareAddr.String() == rec.MAC || (a.Alias == rec.Name && a.Name != rec.Name) {
			l = c
			break
		}
	}
	if l == nil {
		slog.Info("device of a host-device attachment not found on the host; forgetting it", "device", rec.Name, "mac", rec.MAC)
		return nil
	}
	if l.Attrs().Name != rec.Name {
		if err := host.Handle.LinkSetDown(l); err != nil {
			return fmt.Errorf("setting %s down to rename it: %w", l.Attrs().Name, err)
		}
		if err := link.Rename(host, l, rec.Name); err != nil {
			return err
		}
	}
	if l.Attrs().Alias != rec.Alias {
		if err := host.Handle.LinkSetAlias(l, rec.Alias); err != nil {
			return fmt.Errorf("restoring the alias of %s: %w", rec.Name, err)
		}
	}
	if err := link.SetMTU(host, l, rec.MTU); err != nil {
		return err
	}
	return restoreAddrs(host, l, rec)
}

// Del returns the device to the host: best effort and repeatable.
func (Plugin) Del(ctx context.Context, req *skel.Request) error {
	conf, err := parseConfig(req.Config)
	if err != nil {
		return err
	}
	var errs []error
	if conf.hasIPAM() {
		if err := invoke.DelegateDel(ctx, conf.IPAM.Type, req.Config, nil); err != nil {
			errs = append(errs, err)
		}
	}
	if conf.usesPCI() {
		if dpdk, _, err := isDPDK(conf.PCIBusID); err == nil && dpdk {
			return cni.FirstError(errs...)
		}
	}
	st := store{dir: conf.DataDir}
	rec, err := st.load(req.NetConf.Name, req.ContainerID, req.IfName)
	if err != nil {
		return cni.FirstError(append(errs, cni.NewError(cni.ErrIOFailure, "cannot read the host state of "+req.IfName, err.Error()))...)
	}
	if err := release(req.Netns, req.IfName, rec); err != nil {
		return cni.FirstError(append(errs, cni.NewError(cni.ErrInternal, "cannot return "+req.IfName+" to the host", err.Error()))...)
	}
	if err := st.remove(req.NetConf.Name, req.ContainerID, req.IfName); err != nil {
		errs = append(errs, cni.NewError(cni.ErrIOFailure, "cannot remove the host state of "+req.IfName, err.Error()))
	}
	return cni.FirstError(errs...)
}

// release gives the device of one attachment back to the host: from the
// container namespace nsPath if it is still there, otherwise (with a
// record) by finding it on the host.
func release(nsPath, ifname string, rec *record) error {
	host, err := link.Current()
	if err != nil {
		return err
	}
	defer host.Close()
	if nsPath != "" {
		cont, err := link.Open(nsPath)
		switch {
		case err == nil:
			defer cont.Close()
			l, err := cont.Handle.LinkByName(ifname)
			if err == nil && (rec == nil || l.Attrs().Alias == rec.Name) {
				return moveOut(host, cont, l, rec)
			}
			if err == nil {
				slog.Warn("interface in the container is not the recorded device; leaving it", "ifname", ifname, "alias", l.Attrs().Alias, "device", rec.Name)
			} else if !link.IsNotFound(err) {
				return fmt.Errorf("looking up %s in %s: %w", ifname, nsPath, err)
			}
		case !netns.IsNotExist(err):
			return err
		}
	}
	if rec == nil {
		return nil
	}
	return recoverOnHost(host, rec)
}

// Check verifies the device is in the container as ADD left it.
func (Plugin) Check(ctx context.Context, req *skel.Request) error {
	conf, err := parseConfig(req.Config)
	if err != nil {
		return err
	}
	if conf.usesPCI() {
		dpdk, _, err := isDPDK(conf.PCIBusID)
		if err != nil {
			return onelink.CheckErr("cannot use "+conf.selector(), err.Error())
		}
		if dpdk {
			if conf.hasIPAM() {
				return invoke.DelegateCheck(ctx, conf.IPAM.Type, req.Config, nil)
			}
			return nil
		}
	}
	rec, err := store{dir: conf.DataDir}.load(req.NetConf.Name, req.ContainerID, req.IfName)
	if err != nil {
		return cni.NewError(cni.ErrIOFailure, "cannot read the host state of "+req.IfName, err.Error())
	}
	a, err := onelink.Open(req)
	if err != nil {
		return err
	}
	defer a.Close()
	return a.Check(ctx, func(l netlink.Link) error {
		alias := l.Attrs().Alias
		if alias == "" {
			return onelink.CheckErr(req.IfName+" has no alias naming its host interface", "it was not moved in by host-device, or its alias was cleared; DEL could not return it")
		}
		if rec != nil && alias != rec.Name {
			return onelink.CheckErr(req.IfName+" is not the device ADD moved in",
				fmt.Sprintf("its alias says %q, the record says %q", alias, rec.Name))
		}
		return nil
	})
}

// Status reports whether the IPAM plugin (if any) can serve ADD.
func (Plugin) Status(ctx context.Context, req *skel.Request) error {
	if _, err := parseConfig(req.Config); err != nil {
		return err
	}
	return onelink.Status(ctx, req)
}

// GC returns the devices of attachments that are no longer valid to the
// host and forwards GC to the IPAM plugin.
func (Plugin) GC(ctx context.Context, req *skel.Request) error {
	conf, err := parseConfig(req.Config)
	if err != nil {
		return err
	}
	var errs []error
	if conf.hasIPAM() {
		if err := invoke.DelegateGC(ctx, conf.IPAM.Type, req.Config, nil); err != nil {
			errs = append(errs, err)
		}
	}
	keep := map[[2]string]bool{}
	for _, at := range req.NetConf.Attachments() {
		keep[[2]string{at.ContainerID, at.IfName}] = true
	}
	st := store{dir: conf.DataDir}
	recs, err := st.list(req.NetConf.Name)
	if err != nil {
		return cni.FirstError(append(errs, cni.NewError(cni.ErrIOFailure, "cannot list host-device state", err.Error()))...)
	}
	for _, rec := range recs {
		if keep[[2]string{rec.ContainerID, rec.IfName}] {
			continue
		}
		if err := release(rec.Netns, rec.IfName, rec); err != nil {
			errs = append(errs, cni.NewError(cni.ErrInternal, fmt.Sprintf("cannot return %s of stale attachment %s/%s to the host", rec.Name, rec.ContainerID, rec.IfName), err.Error()))
			continue
		}
		if err := st.remove(rec.Network, rec.ContainerID, rec.IfName); err != nil {
			errs = append(errs, cni.NewError(cni.ErrIOFailure, "cannot remove host-device state", err.Error()))
		}
	}
	return cni.FirstError(errs...)
}
