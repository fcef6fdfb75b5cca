package link

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// ByName and ByIndex are lean versions of Handle.LinkByName and
// LinkByIndex for the plugins' hot paths. A plugin is a short-lived process
// in which the first use of a code path costs more than the work itself
// (page faults on code never run before); the netlink library's general
// link parser is large (every link kind's attributes), while these read only
// what knit's callers use, through a socket each Namespace keeps open.
//
// The links they return are *netlink.Bridge (with its bridge settings),
// *netlink.Veth (no peer details: the kernel does not report them),
// *netlink.Device for links without a kind (lo, physical NICs) and
// *netlink.GenericLink (LinkType = the kind) for every other kind, whose
// kind-specific settings are not read: use Handle.LinkByName for those.
// LinkAttrs carries Index, Name, Flags, RawFlags, MTU, TxQLen, HardwareAddr,
// PermHWAddr, MasterIndex, ParentIndex (IFLA_LINK: a veth's peer), NetNsID,
// OperState, Promisc, Allmulti, Multi, Alias, Group, queue counts, GSO/GRO/TSO
// limits, EncapType and AltNames; Statistics, Xdp, Vfs and Slave are left
// empty.

// ByName returns the link called name (or with that alternative name) in
// ns. A missing link gives an error for which IsNotFound is true.
func ByName(ns *Namespace, name string) (netlink.Link, error) {
	if name == "" {
		return nil, errors.New("looking up a link: no name given")
	}
	attr := unix.IFLA_IFNAME
	if len(name) >= unix.IFNAMSIZ {
		attr = unix.IFLA_ALT_IFNAME
	}
	l, err := ns.getLink(0, attr, name)
	if errors.Is(err, unix.EINVAL) {
		// A kernel that cannot look links up by (alternative) name.
		return ns.Handle.LinkByName(name)
	}
	if err != nil {
		return nil, fmt.Errorf("looking up link %q in %s: %w", name, ns.where(), err)
	}
	return l, nil
}

// ByIndex returns the link with ifindex index in ns. A missing link gives an
// error for which IsNotFound is true.
func ByIndex(ns *Namespace, index int) (netlink.Link, error) {
	if index <= 0 {
		return nil, fmt.Errorf("looking up a link: invalid ifindex %d", index)
	}
	l, err := ns.getLink(index, 0, "")
	if err != nil {
		return nil, fmt.Errorf("looking up link %d in %s: %w", index, ns.where(), err)
	}
	return l, nil
}

func (n *Namespace) where() string {
	if n.Path == "" {
		return "the host namespace"
	}
	return n.Path
}

// rtextFilterSkipStats is RTEXT_FILTER_SKIP_STATS (linux/rtnetlink.h).
const rtextFilterSkipStats = 1 << 3

// getLink sends one RTM_GETLINK for index, or for the name in attribute
// nameAttr, and parses the answer.
func (n *Namespace) getLink(index int, nameAttr int, name string) (netlink.Link, error) {
	req := nl.NewNetlinkRequest(unix.RTM_GETLINK, 0)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	req.AddData(msg)
	// No counters: the kernel skips summing them (unknown to old kernels,
	// which ignore the bit).
	req.AddData(nl.NewRtAttr(unix.IFLA_EXT_MASK, nl.Uint32Attr(rtextFilterSkipStats)))
	if nameAttr != 0 {
		req.AddData(nl.NewRtAttr(nameAttr, nl.ZeroTerminated(name)))
	}
	msgs, err := n.rawRequest(req, unix.RTM_NEWLINK)
	if err != nil {
		return nil, err
	}
	switch len(msgs) {
	case 0:
		return nil, unix.ENODEV
	case 1:
		return parseLink(msgs[0])
	}
	return nil, fmt.Errorf("the kernel answered a single-link request with %d links", len(msgs))
}

// rtAttr splits the first netlink attribute off b: its type (without the
// nested and byte-order flags), its value and the rest. ok is false at the
// end of b or when the attribute is malformed (err then says so).
func rtAttr(b []byte) (typ uint16, val, rest []byte, ok bool, err error) {
	if len(b) < unix.SizeofRtAttr {
		if len(b) != 0 {
			return 0, nil, nil, false, fmt.Errorf("%d trailing bytes after the last netlink attribute", len(b))
		}
		return 0, nil, nil, false, nil
	}
	l := int(binary.NativeEndian.Uint16(b[0:2]))
	if l < unix.SizeofRtAttr || l > len(b) {
		return 0, nil, nil, false, fmt.Errorf("netlink attribute of length %d in %d bytes", l, len(b))
	}
	typ = binary.NativeEndian.Uint16(b[2:4]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
	val = b[unix.SizeofRtAttr:l]
	al := (l + unix.NLA_ALIGNTO - 1) &^ (unix.NLA_ALIGNTO - 1)
	if al > len(b) {
		al = len(b)
	}
	return typ, val, b[al:], true, nil
}

func u32(v []byte) uint32 {
	if len(v) < 4 {
		return 0
	}
	return binary.NativeEndian.Uint32(v)
}

func cstring(v []byte) string { return string(trimNUL(v)) }

// parseLink reads one RTM_NEWLINK message (ifinfomsg and attributes) into
// the link value the netlink library would have made, for the fields listed
// above.
func parseLink(m []byte) (netlink.Link, error) {
	if len(m) < unix.SizeofIfInfomsg {
		return nil, fmt.Errorf("short link message (%d bytes)", len(m))
	}
	msg := nl.DeserializeIfInfomsg(m)
	base := netlink.NewLinkAttrs()
	base.Index = int(msg.Index)
	base.RawFlags = msg.Flags
	base.Flags = netFlags(msg.Flags)
	base.EncapType = msg.EncapType()
	base.NetNsID = -1
	if msg.Flags&unix.IFF_ALLMULTI != 0 {
		base.Allmulti = 1
	}
	if msg.Flags&unix.IFF_MULTICAST != 0 {
		base.Multi = 1
	}
	var l netlink.Link
	b := m[unix.SizeofIfInfomsg:]
	for {
		typ, val, rest, ok, err := rtAttr(b)
		if err != nil {
			return nil, fmt.Errorf("parsing a link message: %w", err)
		}
		if !ok {
			break
		}
		b = rest
		switch typ {
		case unix.IFLA_LINKINFO:
			if l, err = parseLinkInfo(val); err != nil {
				return nil, fmt.Errorf("parsing a link message: %w", err)
			}
		case unix.IFLA_ADDRESS:
			if nonZero(val) {
				base.HardwareAddr = net.HardwareAddr(append([]byte(nil), val...))
			}
		case unix.IFLA_PERM_ADDRESS:
			if nonZero(val) {
				base.PermHWAddr = net.HardwareAddr(append([]byte(nil), val...))
			}
		case unix.IFLA_IFNAME:
			base.Name = cstring(val)
		case unix.IFLA_IFALIAS:
			base.Alias = cstring(val)
		case unix.IFLA_MTU:
			base.MTU = int(u32(val))
		case unix.IFLA_PROMISCUITY:
			base.Promisc = int(u32(val))
		case unix.IFLA_LINK:
			base.ParentIndex = int(u32(val))
		case unix.IFLA_MASTER:
			base.MasterIndex = int(u32(val))
		case unix.IFLA_TXQLEN:
			base.TxQLen = int(u32(val))
		case unix.IFLA_OPERSTATE:
			if len(val) > 0 {
				base.OperState = netlink.LinkOperState(val[0])
			}
		case unix.IFLA_LINK_NETNSID:
			base.NetNsID = int(int32(u32(val)))
		case unix.IFLA_NUM_TX_QUEUES:
			base.NumTxQueues = int(u32(val))
		case unix.IFLA_NUM_RX_QUEUES:
			base.NumRxQueues = int(u32(val))
		case unix.IFLA_GROUP:
			base.Group = u32(val)
		case unix.IFLA_PHYS_SWITCH_ID:
			base.PhysSwitchID = int(u32(val))
		case unix.IFLA_TSO_MAX_SEGS:
			base.TSOMaxSegs = u32(val)
		case unix.IFLA_TSO_MAX_SIZE:
			base.TSOMaxSize = u32(val)
		case unix.IFLA_GSO_MAX_SEGS:
			base.GSOMaxSegs = u32(val)
		case unix.IFLA_GSO_MAX_SIZE:
			base.GSOMaxSize = u32(val)
		case unix.IFLA_GRO_MAX_SIZE:
			base.GROMaxSize = u32(val)
		case unix.IFLA_GSO_IPV4_MAX_SIZE:
			base.GSOIPv4MaxSize = u32(val)
		case unix.IFLA_GRO_IPV4_MAX_SIZE:
			base.GROIPv4MaxSize = u32(val)
		case unix.IFLA_PARENT_DEV_NAME:
			base.ParentDev = cstring(val)
		case unix.IFLA_PARENT_DEV_BUS_NAME:
			base.ParentDevBus = cstring(val)
		case unix.IFLA_PROP_LIST:
			base.AltNames = []string{}
			for p := val; ; {
				t, v, r, ok, err := rtAttr(p)
				if err != nil {
					return nil, fmt.Errorf("parsing a link's alternative names: %w", err)
				}
				if !ok {
					break
				}
				p = r
				if t == unix.IFLA_ALT_IFNAME {
					base.AltNames = append(base.AltNames, cstring(v))
				}
			}
		}
	}
	if l == nil {
		l = &netlink.Device{}
	}
	*l.Attrs() = base
	return l, nil
}

// parseLinkInfo reads IFLA_LINKINFO: the kind, and a bridge's settings.
func parseLinkInfo(b []byte) (netlink.Link, error) {
	var kind string
	var data []byte
	for {
		typ, val, rest, ok, err := rtAttr(b)
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		b = rest
		switch typ {
		case unix.IFLA_INFO_KIND:
			kind = cstring(val)
		case unix.IFLA_INFO_DATA:
			data = val
		}
	}
	switch kind {
	case "":
		return nil, nil
	case "bridge":
		br := &netlink.Bridge{}
		if err := parseBridgeInfo(br, data); err != nil {
			return nil, fmt.Errorf("parsing bridge settings: %w", err)
		}
		return br, nil
	case "veth":
		return &netlink.Veth{}, nil
	}
	return &netlink.GenericLink{LinkType: kind}, nil
}

// parseBridgeInfo reads the IFLA_INFO_DATA settings of a bridge that the
// netlink library reports.
func parseBridgeInfo(br *netlink.Bridge, b []byte) error {
	for {
		typ, val, rest, ok, err := rtAttr(b)
		if err != nil {
			return err
		}
		if !ok {
			return nil
		}
		b = rest
		switch typ {
		case unix.IFLA_BR_AGEING_TIME:
			if len(val) >= 4 {
				v := u32(val)
				br.AgeingTime = &v
			}
		case unix.IFLA_BR_HELLO_TIME:
			if len(val) >= 4 {
				v := u32(val)
				br.HelloTime = &v
			}
		case unix.IFLA_BR_MCAST_SNOOPING:
			if len(val) >= 1 {
				v := val[0] == 1
				br.MulticastSnooping = &v
			}
		case unix.IFLA_BR_VLAN_FILTERING:
			if len(val) >= 1 {
				v := val[0] == 1
				br.VlanFiltering = &v
			}
		case unix.IFLA_BR_VLAN_DEFAULT_PVID:
			if len(val) >= 2 {
				v := binary.NativeEndian.Uint16(val)
				br.VlanDefaultPVID = &v
			}
		case unix.IFLA_BR_GROUP_FWD_MASK:
			if len(val) >= 2 {
				v := binary.NativeEndian.Uint16(val)
				br.GroupFwdMask = &v
			}
		}
	}
}

func nonZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return true
		}
	}
	return false
}

// netFlags converts IFF_* flags to net.Flags as the netlink library does.
func netFlags(raw uint32) net.Flags {
	var f net.Flags
	for _, p := range [...]struct {
		iff uint32
		f   net.Flags
	}{
		{unix.IFF_UP, net.FlagUp},
		{unix.IFF_BROADCAST, net.FlagBroadcast},
		{unix.IFF_LOOPBACK, net.FlagLoopback},
		{unix.IFF_POINTOPOINT, net.FlagPointToPoint},
		{unix.IFF_MULTICAST, net.FlagMulticast},
		{unix.IFF_RUNNING, net.FlagRunning},
	} {
		if raw&p.iff != 0 {
			f |= p.f
		}
	}
	return f
}
