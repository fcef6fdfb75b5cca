package bridge

import (
	"context"
	"fmt"
	"net"
	"strings"

	"github.com/knit-cni/knit/internal/ipcfg"
	"github.com/knit-cni/knit/internal/link"
	"github.com/knit-cni/knit/internal/nft"
	"github.com/knit-cni/knit/pkg/cni"
	"github.com/knit-cni/knit/pkg/cni/invoke"
	"github.com/knit-cni/knit/pkg/cni/skel"
	"github.com/vishvananda/netlink"
)

// checkErr is a CHECK failure: something ADD made is gone or changed.
func checkErr(msg, details string) error {
	return cni.NewError(cni.ErrInternal, msg, details)
}

// Check verifies the attachment described by prevResult is intact: IPAM,
// bridge, both veth ends and the port, addresses, routes, masquerade and
// the spoof-check rule.
func (Plugin) Check(ctx context.Context, req *skel.Request) error {
	conf, err := parseConfig(req.Config, req.Args)
	if err != nil {
		return err
	}
	if conf.hasIPAM() {
		if err := invoke.DelegateCheck(ctx, conf.IPAM.Type, req.Config, nil); err != nil {
			return err
		}
	}
	prev := req.PrevResult
	if prev == nil {
		return cni.NewError(cni.ErrInvalidNetworkConfig, "required prevResult missing",
			"CHECK needs the ADD result as prevResult; the runtime supplies it from its cache")
	}
	contIdx := -1
	for i, ifc := range prev.Interfaces {
		if ifc.Name == req.IfName && ifc.Sandbox != "" {
			contIdx = i
		}
	}
	if contIdx < 0 {
		return checkErr("prevResult has no interface "+req.IfName+" in a sandbox", "the result does not describe this attachment")
	}
	contIf := prev.Interfaces[contIdx]

	host, err := link.Current()
	if err != nil {
		return cni.NewError(cni.ErrInternal, "cannot open the host network namespace", err.Error())
	}
	defer host.Close()
	cont, err := openNetns(req.Netns)
	if err != nil {
		return err
	}
	defer cont.Close()

	// The bridge.
	bl, err := host.Handle.LinkByName(conf.Bridge)
	if err != nil {
		return checkErr("bridge "+conf.Bridge+" not found", err.Error())
	}
	br, ok := bl.(*netlink.Bridge)
	if !ok {
		return checkErr(conf.Bridge+" is not a bridge", "it is a "+bl.Type())
	}
	if conf.PromiscMode && br.Promisc == 0 {
		return checkErr("bridge "+conf.Bridge+" is not promiscuous", "promiscMode is set in the config")
	}

	// The container end.
	cl, err := cont.Handle.LinkByName(req.IfName)
	if err != nil {
		return checkErr(fmt.Sprintf("interface %s not found in %s", req.IfName, req.Netns), err.Error())
	}
	if _, ok := cl.(*netlink.Veth); !ok {
		return checkErr(req.IfName+" is not a veth", "it is a "+cl.Type())
	}
	if contIf.Mac != "" && !sameMAC(contIf.Mac, cl.Attrs().HardwareAddr) {
		return checkErr("interface "+req.IfName+" has the wrong MAC",
			fmt.Sprintf("it has %s, the result says %s", cl.Attrs().HardwareAddr, contIf.Mac))
	}

	// The host end: the container end's peer, a port of the bridge.
	hl, err := link.Peer(host, cl)
	if err != nil {
		return checkErr("host end of "+req.IfName+" not found", err.Error())
	}
	if hl.Attrs().MasterIndex != br.Index {
		return checkErr("host veth "+hl.Attrs().Name+" is not a port of "+conf.Bridge,
			fmt.Sprintf("its master has ifindex %d, the bridge %d", hl.Attrs().MasterIndex, br.Index))
	}
	// The result must name the peer among its host-side interfaces. Chained
	// plugins may add host interfaces of their own (bandwidth's ifb), so
	// other names are not an error.
	var hostNames []string
	named := false
	for _, ifc := range prev.Interfaces {
		if ifc.Sandbox == "" && ifc.Name != conf.Bridge {
			hostNames = append(hostNames, ifc.Name)
			named = named || ifc.Name == hl.Attrs().Name
		}
	}
	if len(hostNames) > 0 && !named {
		return checkErr("host veth name changed", fmt.Sprintf("the result names %s, the peer of %s is %s",
			strings.Join(hostNames, ", "), req.IfName, hl.Attrs().Name))
	}
	if conf.HairpinMode || conf.PortIsolation {
		pi, err := host.Handle.LinkGetProtinfo(hl)
		if err != nil {
			return checkErr("cannot read the port settings of "+hl.Attrs().Name, err.Error())
		}
		if conf.HairpinMode && !pi.Hairpin {
			return checkErr("hairpin mode is off on port "+hl.Attrs().Name, "hairpinMode is set in the config")
		}
		if conf.PortIsolation && !pi.Isolated {
			return checkErr("port "+hl.Attrs().Name+" is not isolated", "portIsolation is set in the config")
		}
	}

	// Addresses and routes in the container.
	ips := ipcfg.IPsFor(prev, contIdx)
	if err := ipcfg.CheckAddresses(cont, cl, ips); err != nil {
		return checkErr("address check failed", err.Error())
	}
	if err := ipcfg.CheckRoutes(cont, cl, prev.Routes, ips); err != nil {
		return checkErr("route check failed", err.Error())
	}

	if conf.IsGateway && conf.IPMasq && len(ips) > 0 {
		if err := nft.NewMasq().Check(owner(req), masqNets(ips)); err != nil {
			return checkErr("masquerade check failed", err.Error())
		}
	}
	if conf.MacSpoofChk {
		if err := spoofCheck(owner(req), hl.Attrs().Name, cl.Attrs().HardwareAddr); err != nil {
			return err
		}
	}
	return nil
}

func sameMAC(s string, hw net.HardwareAddr) bool {
	m, err := net.ParseMAC(s)
	return err == nil && m.String() == hw.String()
}
