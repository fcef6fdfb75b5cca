package link

import (
	"encoding/binary"
	"fmt"
	"net"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// IPv4ConfToward finds the interface through which the calling thread's
// namespace routes to dst (as `ip route get` would) and reads that
// interface's IPv4 settings (by IPv4ConfID). It needs one netlink socket and
// two requests, where opening a Namespace, a route lookup, a link lookup and
// IPv4Conf take three descriptors and three requests: portmap asks this on
// every ADD.
func IPv4ConfToward(dst net.IP) (ifname string, conf map[int]uint32, err error) {
	var here Namespace // Path "": the calling thread's namespace
	return here.ipv4ConfToward(dst)
}

func (ns *Namespace) ipv4ConfToward(dst net.IP) (ifname string, conf map[int]uint32, err error) {
	dst4 := dst.To4()
	if dst4 == nil {
		return "", nil, fmt.Errorf("%s is not an IPv4 address", dst)
	}
	s, err := ns.rawSocket(nlBufSize)
	if err != nil {
		return "", nil, err
	}
	defer s.close()

	rreq := nl.NewNetlinkRequest(unix.RTM_GETROUTE, unix.NLM_F_REQUEST)
	rreq.AddData(&nl.RtMsg{RtMsg: unix.RtMsg{Family: unix.AF_INET, Dst_len: 32}})
	rreq.AddData(nl.NewRtAttr(unix.RTA_DST, dst4))
	msgs, err := s.execute(rreq, unix.RTM_NEWROUTE)
	if err != nil {
		return "", nil, fmt.Errorf("finding the route to %s: %w", dst, err)
	}
	index := 0
	for _, m := range msgs {
		if len(m) < unix.SizeofRtMsg {
			continue
		}
		attrs, err := nl.ParseRouteAttr(m[unix.SizeofRtMsg:])
		if err != nil {
			return "", nil, fmt.Errorf("finding the route to %s: %w", dst, err)
		}
		for _, a := range attrs {
			if a.Attr.Type == unix.RTA_OIF && len(a.Value) >= 4 {
				index = int(binary.NativeEndian.Uint32(a.Value))
			}
		}
	}
	if index == 0 {
		return "", nil, fmt.Errorf("no route to %s through an interface", dst)
	}

	ifname, conf, err = linkIPv4Conf(s.execute, index)
	if err != nil {
		return "", nil, fmt.Errorf("reading interface %d (toward %s): %w", index, dst, err)
	}
	if ifname == "" {
		return "", nil, fmt.Errorf("interface %d (toward %s) has no name", index, dst)
	}
	if conf == nil {
		return ifname, nil, fmt.Errorf("%s: %w", ifname, ErrNoIPv4Conf)
	}
	return ifname, conf, nil
}
