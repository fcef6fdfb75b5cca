package link

import (
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Requests the netlink library cannot express (a per-link address dump, the
// per-interface IPv4 settings) go through a socket of their own in the
// namespace. They exist for scale: with a thousand links in the host, a
// whole-namespace address dump and /proc/sys lookups (whose dentries for
// "net", "ipv4", "conf", "eth0" collide across every namespace) cost
// milliseconds per plugin run; these requests cost the same at any size.

// rawRequest runs req in ns on the namespace's own NETLINK_ROUTE socket,
// with the kernel's strict checking on when strict (needed for filtered
// dumps), and returns the answers of type resType.
func (n *Namespace) rawRequest(req *nl.NetlinkRequest, resType uint16, strict bool) ([][]byte, error) {
	s, err := n.sharedSocket(strict)
	if err != nil {
		return nil, err
	}
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: s}
	return req.Execute(unix.NETLINK_ROUTE, resType)
}

// sharedSocket returns the namespace's socket for rawRequest, opening it on
// first use. Requests on it may run concurrently: the library serialises
// them and tells their answers apart by sequence number.
func (n *Namespace) sharedSocket(strict bool) (*nl.SocketHandle, error) {
	i := 0
	if strict {
		i = 1
	}
	n.rawMu.Lock()
	defer n.rawMu.Unlock()
	if n.raw[i] == nil {
		s, err := n.rawSocket(strict)
		if err != nil {
			return nil, err
		}
		n.raw[i] = &nl.SocketHandle{Socket: s}
	}
	return n.raw[i], nil
}

// rawSocket opens a NETLINK_ROUTE socket in ns for rawExecute.
func (n *Namespace) rawSocket(strict bool) (*nl.NetlinkSocket, error) {
	target := n.fd
	if n.Path == "" {
		target = vnetns.None() // the calling thread's namespace
	}
	s, err := nl.GetNetlinkSocketAt(target, vnetns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("opening a netlink socket: %w", err)
	}
	if err := s.SetReceiveTimeout(&nl.SocketTimeoutTv); err != nil {
		s.Close()
		return nil, err
	}
	if strict {
		if err := unix.SetsockoptInt(s.GetFd(), unix.SOL_NETLINK, unix.NETLINK_GET_STRICT_CHK, 1); err != nil {
			s.Close()
			return nil, fmt.Errorf("turning on netlink strict checking: %w", err)
		}
	}
	return s, nil
}

// rawExecute runs req on s and returns the answers of type resType.
func rawExecute(s *nl.NetlinkSocket, req *nl.NetlinkRequest, resType uint16) ([][]byte, error) {
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: {Socket: s}}
	return req.Execute(unix.NETLINK_ROUTE, resType)
}

// AddrsOf returns l's addresses of family (netlink.FAMILY_V4, _V6 or _ALL)
// like Handle.AddrList, but the kernel dumps only l's addresses (a dump
// filtered by interface index, kernel ≥ 4.20) instead of every address in
// the namespace, so the cost does not grow with the number of links beside
// it. Older kernels get the whole-namespace dump.
func AddrsOf(ns *Namespace, l netlink.Link, family int) ([]netlink.Addr, error) {
	index := l.Attrs().Index
	req := nl.NewNetlinkRequest(unix.RTM_GETADDR, unix.NLM_F_DUMP)
	msg := nl.NewIfAddrmsg(family)
	msg.Index = uint32(index)
	req.AddData(msg)
	msgs, err := Dump(func() ([][]byte, error) { return ns.rawRequest(req, unix.RTM_NEWADDR, true) })
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOPROTOOPT) {
		return Dump(func() ([]netlink.Addr, error) { return ns.Handle.AddrList(l, family) })
	}
	if err != nil {
		return nil, fmt.Errorf("listing addresses of %s: %w", l.Attrs().Name, err)
	}
	var out []netlink.Addr
	for _, m := range msgs {
		a, ok, err := parseAddrMsg(m)
		if err != nil {
			return nil, fmt.Errorf("listing addresses of %s: %w", l.Attrs().Name, err)
		}
		// The filter is the kernel's; check it anyway.
		if ok && a.LinkIndex == index && (family == netlink.FAMILY_ALL || a.family == family) {
			out = append(out, a.Addr)
		}
	}
	return out, nil
}

type parsedAddr struct {
	netlink.Addr
	family int
}

// parseAddrMsg reads one RTM_NEWADDR message: the address (IFA_LOCAL when
// present, else IFA_ADDRESS; IFA_ADDRESS is then the peer), its prefix,
// scope, flags and label.
func parseAddrMsg(m []byte) (parsedAddr, bool, error) {
	if len(m) < unix.SizeofIfAddrmsg {
		return parsedAddr{}, false, fmt.Errorf("short address message (%d bytes)", len(m))
	}
	msg := nl.DeserializeIfAddrmsg(m)
	attrs, err := nl.ParseRouteAttr(m[unix.SizeofIfAddrmsg:])
	if err != nil {
		return parsedAddr{}, false, err
	}
	bits := 32
	if msg.Family == unix.AF_INET6 {
		bits = 128
	}
	mask := net.CIDRMask(int(msg.Prefixlen), bits)
	var local, address net.IP
	a := parsedAddr{family: int(msg.Family)}
	a.LinkIndex = int(msg.Index)
	a.Scope = int(msg.Scope)
	a.Flags = int(msg.Flags)
	for _, at := range attrs {
		switch at.Attr.Type {
		case unix.IFA_LOCAL:
			local = net.IP(append([]byte(nil), at.Value...))
		case unix.IFA_ADDRESS:
			address = net.IP(append([]byte(nil), at.Value...))
		case unix.IFA_LABEL:
			a.Label = string(trimNUL(at.Value))
		case unix.IFA_FLAGS:
			if len(at.Value) >= 4 {
				a.Flags = int(nl.NativeEndian().Uint32(at.Value[:4]))
			}
		}
	}
	switch {
	case local != nil:
		a.IPNet = &net.IPNet{IP: local, Mask: mask}
		if address != nil && !address.Equal(local) {
			a.Peer = &net.IPNet{IP: address, Mask: mask}
		}
	case address != nil:
		a.IPNet = &net.IPNet{IP: address, Mask: mask}
	default:
		return parsedAddr{}, false, nil
	}
	return a, true, nil
}

func trimNUL(b []byte) []byte {
	for i, c := range b {
		if c == 0 {
			return b[:i]
		}
	}
	return b
}
