package nft

import (
	"net/netip"
	"sync"

	"github.com/knit-cni/knit/pkg/cni"
	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// udpFilter matches conntrack flows of one UDP host port, optionally to one
// host address, in either family.
type udpFilter struct {
	port uint16
	host netip.Addr // zero: any destination
}

func (f udpFilter) MatchConntrackFlow(flow *netlink.ConntrackFlow) bool {
	if flow.Forward.Protocol != unix.IPPROTO_UDP || flow.Forward.DstPort != f.port {
		return false
	}
	if !f.host.IsValid() {
		return true
	}
	a, ok := netip.AddrFromSlice(flow.Forward.DstIP)
	return ok && a.Unmap() == f.host
}

// FlushUDPConntrack deletes the conntrack entries of the UDP host ports among
// maps, in the namespace open as netnsFD (-1 or 0: the caller's). UDP has no
// connection end, so without this a client that kept sending to a host port
// stays bound to the container that held it before (or to nothing). It
// dumps the conntrack table once per family when maps hold a UDP port and
// does nothing otherwise.
func FlushUDPConntrack(netnsFD int, maps []PortMapping) error {
	var filters []netlink.CustomConntrackFilter
	for _, pm := range maps {
		if pm.Protocol != "udp" {
			continue
		}
		f := udpFilter{port: pm.HostPort}
		if !pm.anyHost() {
			f.host = pm.HostIP.Unmap()
		}
		filters = append(filters, f)
	}
	if len(filters) == 0 {
		return nil
	}
	h, err := handleIn(netnsFD)
	if err != nil {
		return cni.NewError(cni.ErrInternal, "cannot open a netlink socket to flush conntrack entries", err.Error())
	}
	defer closeOrHandOff(h)
	for _, fam := range []netlink.InetFamily{unix.AF_INET, unix.AF_INET6} {
		if _, err := h.ConntrackDeleteFilters(netlink.ConntrackTable, fam, filters...); err != nil {
			return cni.NewError(cni.ErrInternal, "cannot flush the UDP conntrack entries of the mapped ports",
				err.Error()+" (the kernel needs nf_conntrack_netlink)")
		}
	}
	return nil
}

func handleIn(netnsFD int) (*netlink.Handle, error) {
	if netnsFD > 0 {
		return netlink.NewHandleAt(vnetns.NsHandle(netnsFD), unix.NETLINK_NETFILTER)
	}
	return netlink.NewHandle(unix.NETLINK_NETFILTER)
}

func (p *PortMap) flushConntrack(maps []PortMapping) error {
	return FlushUDPConntrack(p.base.netnsFD, maps)
}

// handedOff keeps netlink handles alive until HandOff passes their sockets
// to the closer at exit.
var (
	handedOffMu sync.Mutex
	handedOff   []*netlink.Handle
)

// closeOrHandOff closes h, unless a closer is installed (a plugin process,
// about to exit): a netfilter socket's release waits for the kernel after
// the nftables change just made (see Detach), so h is kept open for the
// closer instead.
func closeOrHandOff(h *netlink.Handle) {
	if handOff.Load() == nil {
		h.Close()
		return
	}
	handedOffMu.Lock()
	handedOff = append(handedOff, h)
	handedOffMu.Unlock()
}
