package link

import (
	"errors"
	"fmt"
	"net"

	"github.com/knit-cni/knit/internal/netns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Requests the netlink library cannot express (a per-link address dump, the
// per-interface IPv4 settings) go through a socket of their own in the
// namespace. They exist for scale: with a thousand links in the host, a
// whole-namespace address dump and /proc/sys lookups (whose dentries for
// "net", "ipv4", "conf", "eth0" collide across every namespace) cost
// milliseconds per plugin run; these requests cost the same at any size.

// rawRequest runs req on the namespace's own NETLINK_ROUTE socket (see
// nlsock.go) and returns the answers of type resType (all when 0). A socket
// given up after a truncated dump is replaced and a GET asked once more.
func (n *Namespace) rawRequest(req *nl.NetlinkRequest, resType uint16) ([][]byte, error) {
	s, err := n.sharedSocket()
	if err != nil {
		return nil, err
	}
	msgs, err := s.execute(req, resType)
	if errors.Is(err, errSocketReset) && req.Type&rtmKindMask == rtmKindGet {
		if s, err = n.sharedSocket(); err != nil {
			return nil, err
		}
		msgs, err = s.execute(req, resType)
	}
	return msgs, err
}

// sharedSocket returns the namespace's socket for rawRequest, opening it on
// first use (Open opens it with the handle) or when the last one was given
// up. Requests on it may run concurrently: they take turns.
func (n *Namespace) sharedSocket() (*nlSocket, error) {
	n.rawMu.Lock()
	defer n.rawMu.Unlock()
	if n.raw != nil && n.raw.usable() {
		return n.raw, nil
	}
	size := nlBufSize
	if n.raw != nil {
		size = n.raw.bufLen() // grown to what the kernel sent
	}
	s, err := n.rawSocket(size)
	if err != nil {
		return nil, err
	}
	n.raw = s
	return s, nil
}

// rawSocket opens a socket of the raw path in ns, with a receive buffer of
// size bytes.
func (n *Namespace) rawSocket(size int) (*nlSocket, error) {
	if n.Path == "" {
		return openNLSocket(size) // the calling thread's namespace
	}
	var s *nlSocket
	err := netns.DoHandle(n.fd, func() error {
		var err error
		s, err = openNLSocket(size)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("in %s: %w", n.Path, err)
	}
	return s, nil
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
	msgs, err := Dump(func() ([][]byte, error) { return ns.rawRequest(req, unix.RTM_NEWADDR) })
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
