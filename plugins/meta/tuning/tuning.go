// Package tuning is the tuning meta plugin: it sets network sysctls in the
// container's namespace (keys under net only, IFNAME replaced by the
// interface, checked against the allow-list /etc/cni/tuning/allowlist.conf
// when it exists) and the interface's MAC, MTU, promiscuous and
// all-multicast modes and transmit queue length, all over netlink and
// /proc/sys. Keys, overrides (CNI_ARGS MAC, runtimeConfig.mac, args.cni)
// and the saved-state file (/run/cni/tuning/<containerID>_<ifname>.json)
// match the reference plugin.
//
// Beyond the reference: sysctls are restored on DEL too, the original
// values are saved before anything changes (and kept across a repeated
// ADD), a failing ADD undoes what it did, CHECK resolves IFNAME, and GC
// drops saved state of attachments that are gone.
package tuning

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/knit-cni/knit/internal/link"
	"github.com/knit-cni/knit/internal/netns"
	"github.com/knit-cni/knit/internal/sysctl"
	"github.com/knit-cni/knit/pkg/cni"
	"github.com/knit-cni/knit/pkg/cni/skel"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Plugin implements skel.Plugin and skel.GCer.
type Plugin struct{}

// Info describes the plugin for VERSION and the about banner.
var Info = skel.Info{Name: "tuning", About: "knit tuning plugin: sysctls and link attributes of a container interface, restored on DEL"}

var (
	_ skel.Plugin = Plugin{}
	_ skel.GCer   = Plugin{}
)

func openLink(req *skel.Request) (*link.Namespace, netlink.Link, error) {
	cont, err := link.Open(req.Netns)
	if err != nil {
		if netns.IsNotExist(err) {
			return nil, nil, err
		}
		return nil, nil, cni.NetNSError(req.Netns, err)
	}
	l, err := cont.Handle.LinkByName(req.IfName)
	if err != nil {
		cont.Close()
		if link.IsNotFound(err) {
			return nil, nil, cni.NewError(cni.ErrInvalidNetworkConfig, fmt.Sprintf("interface %s not found in %s", req.IfName, req.Netns),
				"tuning is a chained plugin: put it after the plugin that creates the interface")
		}
		return nil, nil, cni.NewError(cni.ErrInternal, "cannot look up "+req.IfName, err.Error())
	}
	return cont, l, nil
}

func promisc(l netlink.Link) bool  { return l.Attrs().Promisc != 0 }
func allmulti(l netlink.Link) bool { return l.Attrs().RawFlags&unix.IFF_ALLMULTI != 0 }

// Add applies the tuning and passes prevResult on with the interface's new
// MAC.
func (Plugin) Add(ctx context.Context, req *skel.Request) (_ *cni.Result, retErr error) {
	conf, err := parseConfig(req.Config, req.Args, req.IfName)
	if err != nil {
		return nil, err
	}
	if req.PrevResult == nil {
		return nil, cni.NewError(cni.ErrInvalidNetworkConfig, "tuning must be called as a chained plugin",
			"put it after the plugin that creates the interface in a conflist; it needs that plugin's result as prevResult")
	}
	res := req.PrevResult
	if len(conf.sysctls) == 0 && !conf.changesLink() {
		return res, nil
	}
	cont, l, err := openLink(req)
	if err != nil {
		if netns.IsNotExist(err) {
			return nil, cni.NetNSError(req.Netns, err)
		}
		return nil, err
	}
	defer cont.Close()

	// Record the originals first (keeping those of an earlier ADD), so
	// neither a failure nor a crash loses them.
	file := stateFile(conf.DataDir, req.ContainerID, req.IfName)
	rec, err := readState(file)
	if err != nil {
		return nil, cni.NewError(cni.ErrIOFailure, "cannot read saved tuning state", err.Error())
	}
	created := rec == nil
	if rec == nil {
		rec = &saved{}
	}
	rec.Network = conf.Name
	if err := inNS(cont, conf.sysctls, func() error {
		for _, s := range conf.sysctls {
			cur, err := sysctl.Get(s.Key)
			if err != nil {
				if sysctl.IsNotExist(err) {
					return cni.NewError(cni.ErrInvalidNetworkConfig, fmt.Sprintf("sysctl %s does not exist in the container", s.Given),
						"/proc/sys/"+s.Key+" is missing: check the key's spelling and that the kernel has the feature")
				}
				return cni.NewError(cni.ErrInternal, "cannot read sysctl "+s.Given, err.Error())
			}
			if _, ok := rec.Sysctl[s.Key]; !ok {
				if rec.Sysctl == nil {
					rec.Sysctl = map[string]string{}
				}
				rec.Sysctl[s.Key] = cur
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	a := l.Attrs()
	if conf.mac != nil && rec.Mac == "" {
		rec.Mac = a.HardwareAddr.String()
	}
	if conf.Mtu != 0 && rec.Mtu == 0 {
		rec.Mtu = a.MTU
	}
	if conf.Promisc && rec.Promisc == nil {
		rec.Promisc = boolPtr(promisc(l))
	}
	if conf.Allmulti != nil && rec.Allmulti == nil {
		rec.Allmulti = boolPtr(allmulti(l))
	}
	if conf.TxQLen != nil && rec.TxQLen == nil {
		q := a.TxQLen
		rec.TxQLen = &q
	}
	if err := writeState(file, rec); err != nil {
		return nil, cni.NewError(cni.ErrIOFailure, "cannot save the original values", err.Error())
	}
	defer func() {
		if retErr != nil {
			_ = restore(cont, req.IfName, rec)
			if created {
				os.Remove(file)
			}
		}
	}()

	if err := inNS(cont, conf.sysctls, func() error {
		for _, s := range conf.sysctls {
			if _, err := sysctl.Set(s.Key, s.Value); err != nil {
				return cni.NewError(cni.ErrInternal, fmt.Sprintf("cannot set sysctl %s=%s", s.Given, s.Value), err.Error())
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if err := apply(cont, l, linkValues{mac: conf.mac, mtu: conf.Mtu, promisc: promiscWanted(conf), allmulti: conf.Allmulti, txQLen: conf.TxQLen}); err != nil {
		return nil, cni.NewError(cni.ErrInternal, "cannot tune "+req.IfName, err.Error())
	}
	if conf.mac != nil {
		for _, i := range res.Interfaces {
			if i.Name == req.IfName && (i.Sandbox == "" || i.Sandbox == req.Netns) {
				i.Mac = conf.mac.String()
			}
		}
	}
	return res, nil
}

func boolPtr(b bool) *bool { return &b }

// inNS runs fn in the container's namespace when there are sysctls to
// read or write: without any, no thread needs to switch.
func inNS(cont *link.Namespace, sysctls []setting, fn func() error) error {
	if len(sysctls) == 0 {
		return nil
	}
	return cont.Do(fn)
}

func promiscWanted(c *Config) *bool {
	if c.Promisc {
		return boolPtr(true)
	}
	return nil
}

// linkValues are the link attributes to set; zero/nil leaves one alone.
type linkValues struct {
	mac      net.HardwareAddr
	mtu      int
	promisc  *bool
	allmulti *bool
	txQLen   *int
}

func apply(ns *link.Namespace, l netlink.Link, v linkValues) error {
	if err := link.SetMTU(ns, l, v.mtu); err != nil {
		return err
	}
	if err := link.SetMAC(ns, l, v.mac); err != nil {
		return err
	}
	name := l.Attrs().Name
	if v.promisc != nil && *v.promisc != promisc(l) {
		set := ns.Handle.SetPromiscOff
		if *v.promisc {
			set = ns.Handle.SetPromiscOn
		}
		if err := set(l); err != nil {
			return fmt.Errorf("setting promiscuous mode %v on %s: %w", *v.promisc, name, err)
		}
	}
	if v.allmulti != nil && *v.allmulti != allmulti(l) {
		set := ns.Handle.LinkSetAllmulticastOff
		if *v.allmulti {
			set = ns.Handle.LinkSetAllmulticastOn
		}
		if err := set(l); err != nil {
			return fmt.Errorf("setting all-multicast mode %v on %s: %w", *v.allmulti, name, err)
		}
	}
	if v.txQLen != nil && *v.txQLen != l.Attrs().TxQLen {
		if err := ns.Handle.LinkSetTxQLen(l, *v.txQLen); err != nil {
			return fmt.Errorf("setting txqueuelen %d on %s: %w", *v.txQLen, name, err)
		}
	}
	return nil
}

// restore puts back everything rec saved. Sysctls that no longer exist
// (the interface went away) are skipped.
func restore(cont *link.Namespace, ifname string, rec *saved) error {
	var errs []error
	if l, err := cont.Handle.LinkByName(ifname); err == nil {
		v := linkValues{mtu: rec.Mtu, promisc: rec.Promisc, allmulti: rec.Allmulti, txQLen: rec.TxQLen}
		if rec.Mac != "" {
			m, err := net.ParseMAC(rec.Mac)
			if err != nil {
				errs = append(errs, fmt.Errorf("saved MAC %q: %w", rec.Mac, err))
			}
			v.mac = m
		}
		if err := apply(cont, l, v); err != nil {
			errs = append(errs, err)
		}
	} else if !link.IsNotFound(err) {
		errs = append(errs, err)
	}
	if len(rec.Sysctl) > 0 {
		err := cont.Do(func() error {
			var serrs []error
			for k, v := range rec.Sysctl {
				if _, err := sysctl.Set(k, v); err != nil && !sysctl.IsNotExist(err) {
					serrs = append(serrs, err)
				}
			}
			return errors.Join(serrs...)
		})
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Del restores the saved values and removes the record. With the namespace
// or the interface gone there is nothing to restore and the record is just
// removed; repeating DEL is harmless.
func (Plugin) Del(ctx context.Context, req *skel.Request) error {
	conf, err := parseConfig(req.Config, req.Args, req.IfName)
	if err != nil {
		return err
	}
	file := stateFile(conf.DataDir, req.ContainerID, req.IfName)
	rec, err := readState(file)
	if err != nil {
		return cni.NewError(cni.ErrIOFailure, "cannot read saved tuning state", err.Error())
	}
	if rec == nil {
		return nil
	}
	if req.Netns != "" {
		cont, err := link.Open(req.Netns)
		switch {
		case err == nil:
			rerr := restore(cont, req.IfName, rec)
			cont.Close()
			if rerr != nil {
				return cni.NewError(cni.ErrInternal, "cannot restore the original values of "+req.IfName,
					rerr.Error()+" (the saved values stay in "+file+" for another DEL)")
			}
		case !netns.IsNotExist(err):
			return cni.NetNSError(req.Netns, err)
		}
	}
	if err := os.Remove(file); err != nil && !errors.Is(err, os.ErrNotExist) {
		return cni.NewError(cni.ErrIOFailure, "cannot remove saved tuning state", err.Error())
	}
	return nil
}

// Check verifies every configured sysctl and link attribute holds.
func (Plugin) Check(ctx context.Context, req *skel.Request) error {
	conf, err := parseConfig(req.Config, req.Args, req.IfName)
	if err != nil {
		return err
	}
	if req.PrevResult == nil {
		return cni.NewError(cni.ErrInvalidNetworkConfig, "required prevResult missing",
			"CHECK needs the ADD result as prevResult; the runtime supplies it from its cache")
	}
	cont, l, err := openLink(req)
	if err != nil {
		if netns.IsNotExist(err) {
			return cni.NetNSError(req.Netns, err)
		}
		return err
	}
	defer cont.Close()
	if err := inNS(cont, conf.sysctls, func() error {
		for _, s := range conf.sysctls {
			cur, err := sysctl.Get(s.Key)
			if err != nil {
				return cni.NewError(cni.ErrInternal, "cannot read sysctl "+s.Given, err.Error())
			}
			if cur != s.Value {
				return cni.NewError(cni.ErrInternal, fmt.Sprintf("sysctl %s is %s, the config says %s", s.Given, cur, s.Value), "")
			}
		}
		return nil
	}); err != nil {
		return err
	}
	a := l.Attrs()
	bad := func(what string, got, want any) error {
		return cni.NewError(cni.ErrInternal, fmt.Sprintf("%s of %s is %v, the config says %v", what, req.IfName, got, want), "")
	}
	switch {
	case conf.mac != nil && a.HardwareAddr.String() != conf.mac.String():
		return bad("MAC", a.HardwareAddr, conf.mac)
	case conf.Mtu != 0 && a.MTU != conf.Mtu:
		return bad("MTU", a.MTU, conf.Mtu)
	case conf.Promisc && !promisc(l):
		return bad("promiscuous mode", false, true)
	case conf.Allmulti != nil && allmulti(l) != *conf.Allmulti:
		return bad("all-multicast mode", allmulti(l), *conf.Allmulti)
	case conf.TxQLen != nil && a.TxQLen != *conf.TxQLen:
		return bad("txqueuelen", a.TxQLen, *conf.TxQLen)
	}
	return nil
}

// GC removes saved state of this network's attachments that are not in
// cni.dev/valid-attachments (their containers are gone, so there is nothing
// left to restore). Records without a network (the reference plugin's) are
// left alone.
func (Plugin) GC(ctx context.Context, req *skel.Request) error {
	conf, err := parseConfig(req.Config, "", "IFNAME")
	if err != nil {
		return err
	}
	valid := map[[2]string]bool{}
	for _, a := range req.NetConf.Attachments() {
		valid[[2]string{a.ContainerID, a.IfName}] = true
	}
	ents, err := os.ReadDir(conf.DataDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return cni.NewError(cni.ErrIOFailure, "cannot list saved tuning state", err.Error())
	}
	var errs []error
	for _, e := range ents {
		splits := parseStateName(e.Name())
		if len(splits) == 0 || !e.Type().IsRegular() {
			continue
		}
		keep := false
		for _, s := range splits {
			keep = keep || valid[s]
		}
		if keep {
			continue
		}
		file := conf.DataDir + "/" + e.Name()
		rec, err := readState(file)
		if err != nil || rec == nil || rec.Network != conf.Name {
			continue
		}
		if err := os.Remove(file); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return cni.NewError(cni.ErrIOFailure, "tuning GC could not remove every stale record", errors.Join(errs...).Error())
	}
	return nil
}
