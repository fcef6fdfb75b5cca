package link

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"syscall"
	"unsafe"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Tap describes a persistent tap device to create.
type Tap struct {
	// Name is the device's name in its namespace.
	Name string
	// MultiQueue creates a multi-queue device (IFF_MULTI_QUEUE|IFF_NO_PI).
	MultiQueue bool
	// Owner and Group, when set, restrict who may attach to the device;
	// nil leaves it open to any process with CAP_NET_ADMIN (the kernel's
	// "no owner"), unlike a zero uid/gid.
	Owner, Group *uint32
	// MTU sets the device's MTU (0: kernel default).
	MTU int
	// MAC sets the device's hardware address (nil: random).
	MAC net.HardwareAddr
}

// tunDevice is the tun/tap clone device.
const tunDevice = "/dev/net/tun"

// ifreq is struct ifreq as TUNSETIFF reads it: a name and the flags.
type ifreq struct {
	name  [unix.IFNAMSIZ]byte
	flags uint16
	_     [40 - unix.IFNAMSIZ - 2]byte
}

// CreateTap creates a persistent tap device (IFF_TAP|IFF_VNET_HDR) in ns
// with the /dev/net/tun ioctls, then sets its MTU and MAC over netlink,
// and returns it (down). Owner and group are set only when given, so an
// unowned tap stays unowned — the reason the reference plugin runs
// `ip tuntap` instead; no command is run here. A name that exists already
// gives an *ExistsError and leaves the existing device alone.
func CreateTap(ns *Namespace, t Tap) (netlink.Link, error) {
	if t.Name == "" || len(t.Name) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("creating tap: invalid name %q", t.Name)
	}
	if t.MTU < 0 {
		return nil, fmt.Errorf("creating tap %s: invalid MTU %d", t.Name, t.MTU)
	}
	if _, err := ns.Handle.LinkByName(t.Name); err == nil {
		return nil, &ExistsError{Name: t.Name, Path: ns.Path}
	}
	if err := ns.Do(func() error { return tunCreate(t) }); err != nil {
		return nil, err
	}
	l, err := ns.Handle.LinkByName(t.Name)
	if err != nil {
		return nil, fmt.Errorf("looking up the new tap %s: %w", t.Name, err)
	}
	fail := func(err error) (netlink.Link, error) {
		_ = ns.Handle.LinkDel(l)
		return nil, err
	}
	if err := SetMTU(ns, l, t.MTU); err != nil {
		return fail(err)
	}
	if err := SetMAC(ns, l, t.MAC); err != nil {
		return fail(err)
	}
	if l, err = ns.Handle.LinkByIndex(l.Attrs().Index); err != nil {
		return nil, fmt.Errorf("looking up the new tap %s: %w", t.Name, err)
	}
	return l, nil
}

// tunCreate makes the device in the calling thread's namespace: TUNSETIFF
// on a clone fd, owner/group if given, TUNSETPERSIST so it outlives the fd.
func tunCreate(t Tap) error {
	fd, err := unix.Open(tunDevice, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENODEV) {
			return fmt.Errorf("creating tap %s: %s is missing (kernel without CONFIG_TUN, or /dev not mounted): %w", t.Name, tunDevice, err)
		}
		return fmt.Errorf("creating tap %s: opening %s: %w", t.Name, tunDevice, err)
	}
	defer unix.Close(fd)
	var req ifreq
	copy(req.name[:], t.Name)
	// IFF_TUN_EXCL: fail rather than attach to an existing device.
	req.flags = unix.IFF_TAP | unix.IFF_VNET_HDR | unix.IFF_TUN_EXCL
	if t.MultiQueue {
		req.flags |= unix.IFF_MULTI_QUEUE | unix.IFF_NO_PI
	}
	if err := ioctl(fd, unix.TUNSETIFF, uintptr(unsafe.Pointer(&req))); err != nil {
		if errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EEXIST) {
			return &ExistsError{Name: t.Name}
		}
		return fmt.Errorf("creating tap %s (TUNSETIFF): %w", t.Name, err)
	}
	// Until TUNSETPERSIST the device vanishes with fd, so failures below
	// need no cleanup.
	if t.Owner != nil {
		if err := ioctl(fd, unix.TUNSETOWNER, uintptr(*t.Owner)); err != nil {
			return fmt.Errorf("setting the owner of tap %s to uid %d: %w", t.Name, *t.Owner, err)
		}
	}
	if t.Group != nil {
		if err := ioctl(fd, unix.TUNSETGROUP, uintptr(*t.Group)); err != nil {
			return fmt.Errorf("setting the group of tap %s to gid %d: %w", t.Name, *t.Group, err)
		}
	}
	if err := ioctl(fd, unix.TUNSETPERSIST, 1); err != nil {
		return fmt.Errorf("making tap %s persistent: %w", t.Name, err)
	}
	return nil
}

func ioctl(fd int, req uint, arg uintptr) error {
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), arg); errno != 0 {
		return errno
	}
	return nil
}

// TapInfo is what the kernel reports about a tun/tap device.
type TapInfo struct {
	Tap        bool // tap (layer 2) rather than tun
	MultiQueue bool
	VnetHdr    bool
	Persistent bool
	// Owner and Group are nil when the device has none.
	Owner, Group *uint32
}

// DescribeTap returns the tun/tap settings of l in ns, or an error if l is
// not a tun/tap device. (netlink.Tuntap cannot tell "no owner" from uid 0,
// so owner and group are read from the raw link attributes.)
func DescribeTap(ns *Namespace, l netlink.Link) (TapInfo, error) {
	tt, ok := l.(*netlink.Tuntap)
	if !ok {
		return TapInfo{}, fmt.Errorf("%s is a %s, not a tap", l.Attrs().Name, l.Type())
	}
	info := TapInfo{
		Tap:        tt.Mode == netlink.TUNTAP_MODE_TAP,
		MultiQueue: tt.Flags&netlink.TUNTAP_MULTI_QUEUE != 0,
		VnetHdr:    tt.Flags&netlink.TUNTAP_VNET_HDR != 0,
		Persistent: !tt.NonPersist,
	}
	var err error
	if info.Owner, info.Group, err = ns.tunOwner(l.Attrs().Index); err != nil {
		return TapInfo{}, fmt.Errorf("reading the owner of tap %s: %w", l.Attrs().Name, err)
	}
	return info, nil
}

// tunOwner asks ns for link index's IFLA_TUN_OWNER and IFLA_TUN_GROUP,
// which the kernel includes only when set.
func (n *Namespace) tunOwner(index int) (owner, group *uint32, err error) {
	req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	req.AddData(msg)
	msgs, err := n.rawRequest(req, unix.RTM_NEWLINK)
	if err != nil {
		return nil, nil, err
	}
	if len(msgs) != 1 || len(msgs[0]) < unix.SizeofIfInfomsg {
		return nil, nil, fmt.Errorf("unexpected answer to RTM_GETLINK for ifindex %d", index)
	}
	attrs, err := nl.ParseRouteAttr(msgs[0][unix.SizeofIfInfomsg:])
	if err != nil {
		return nil, nil, err
	}
	data := nested(attrs, unix.IFLA_LINKINFO, nl.IFLA_INFO_DATA)
	for _, a := range data {
		if len(a.Value) < 4 {
			continue
		}
		v := binary.NativeEndian.Uint32(a.Value[:4])
		switch a.Attr.Type & nl.NLA_TYPE_MASK {
		case nl.IFLA_TUN_OWNER:
			owner = &v
		case nl.IFLA_TUN_GROUP:
			group = &v
		}
	}
	return owner, group, nil
}

// nested descends through attribute types path and returns the attributes
// inside the last one (nil if any is missing).
func nested(attrs []syscall.NetlinkRouteAttr, path ...uint16) []syscall.NetlinkRouteAttr {
	for _, typ := range path {
		var next []syscall.NetlinkRouteAttr
		for _, a := range attrs {
			if a.Attr.Type&nl.NLA_TYPE_MASK == typ {
				next, _ = nl.ParseRouteAttr(a.Value)
				break
			}
		}
		if next == nil {
			return nil
		}
		attrs = next
	}
	return attrs
}
