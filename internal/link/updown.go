package link

import (
	"fmt"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// SetUp sets l up in ns, like Handle.LinkSetUp (`ip link set l up`), with
// one RTM_NEWLINK on the namespace's own socket (see raw.go) that changes
// only IFF_UP. l needs only its Index, as ByName and ByIndex return it.
func SetUp(ns *Namespace, l netlink.Link) error {
	if err := ns.setUpFlag(l, true); err != nil {
		return fmt.Errorf("setting link %q up in %s: %w", l.Attrs().Name, ns.where(), err)
	}
	return nil
}

// SetDown sets l down in ns, like Handle.LinkSetDown, in the same way as
// SetUp.
func SetDown(ns *Namespace, l netlink.Link) error {
	if err := ns.setUpFlag(l, false); err != nil {
		return fmt.Errorf("setting link %q down in %s: %w", l.Attrs().Name, ns.where(), err)
	}
	return nil
}

// setUpFlag changes IFF_UP of l to up and leaves every other flag alone.
func (n *Namespace) setUpFlag(l netlink.Link, up bool) error {
	index := l.Attrs().Index
	if index <= 0 {
		return fmt.Errorf("invalid ifindex %d (look the link up with ByName or ByIndex first)", index)
	}
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	msg.Change = unix.IFF_UP
	if up {
		msg.Flags = unix.IFF_UP
	}
	req.AddData(msg)
	_, err := n.rawRequest(req, 0)
	return err
}
