package sysctl

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Netconf attributes (linux/netconf.h).
const (
	netconfaIfindex    = 1
	netconfaForwarding = 2
	netconfaIfindexAll = -1
)

// netconfMsg is struct netconfmsg: the family, padded to 4 bytes.
type netconfMsg struct{ family uint8 }

func (m netconfMsg) Len() int          { return 4 }
func (m netconfMsg) Serialize() []byte { return []byte{m.family, 0, 0, 0} }
func (m netconfMsg) String() string    { return fmt.Sprintf("netconfmsg{family %d}", m.family) }

var _ nl.NetlinkRequestData = netconfMsg{}

// forwardingOn asks the kernel over netlink (RTM_GETNETCONF for "all" in the
// calling thread's namespace) whether forwarding is on for family
// (unix.AF_INET: net.ipv4.ip_forward; unix.AF_INET6:
// net.ipv6.conf.all.forwarding). Unlike a read under /proc/sys/net, whose
// path lookup grows with the number of namespaces on the machine, this
// costs the same at any scale. An error means "ask /proc/sys instead".
func forwardingOn(family uint8) (bool, error) {
	req := nl.NewNetlinkRequest(unix.RTM_GETNETCONF, 0)
	req.AddData(netconfMsg{family: family})
	idx := make([]byte, 4)
	v := int32(netconfaIfindexAll)
	binary.NativeEndian.PutUint32(idx, uint32(v))
	req.AddData(nl.NewRtAttr(netconfaIfindex, idx))
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWNETCONF)
	if err != nil {
		return false, err
	}
	for _, m := range msgs {
		if len(m) < 4 {
			continue
		}
		attrs, err := nl.ParseRouteAttr(m[4:])
		if err != nil {
			return false, err
		}
		for _, a := range attrs {
			if a.Attr.Type == netconfaForwarding && len(a.Value) >= 4 {
				return binary.NativeEndian.Uint32(a.Value[:4]) != 0, nil
			}
		}
	}
	return false, errors.New("the kernel's netconf answer has no forwarding attribute")
}
