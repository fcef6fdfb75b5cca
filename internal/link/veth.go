package link

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/knit-cni/knit/internal/netns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// ExistsError says a link of the requested name already exists where the
// caller wanted to create one.
type ExistsError struct {
	Name string
	Path string // namespace path, "" for the host
}

func (e *ExistsError) Error() string {
	where := "the host namespace"
	if e.Path != "" {
		where = e.Path
	}
	return fmt.Sprintf("an interface named %q already exists in %s: DEL the attachment that owns it or choose another CNI_IFNAME", e.Name, where)
}

// RandomVethName returns "veth" and 8 random hex digits, the reference's
// host-side naming.
func RandomVethName() (string, error) {
	var b [4]byte
	if err := randomBytes(b[:]); err != nil {
		return "", fmt.Errorf("choosing a veth name: %w", err)
	}
	return "veth" + hex.EncodeToString(b[:]), nil
}

// Veth describes a veth pair to create.
type Veth struct {
	// ContainerName is the container end's name (CNI_IFNAME).
	ContainerName string
	// HostName is the host end's name; "" picks a random vethXXXXXXXX,
	// retried on collision.
	HostName string
	// MTU of both ends; 0 leaves the kernel default.
	MTU int
	// ContainerMAC sets the container end's MAC; nil lets the kernel pick.
	ContainerMAC net.HardwareAddr
	// HostUp brings the host end up after creation.
	HostUp bool
	// HostNoLinkLocal keeps the host end from generating an IPv6
	// link-local address (addrgenmode none), for a port that only
	// switches frames (a bridge port): no address, route, DAD or MLD
	// traffic per container on the host, whose IPv6 route walk on every
	// interface removal then stays short.
	HostNoLinkLocal bool
	// MasterIndex, when not 0, is the ifindex of a bridge (or other
	// master) in the host namespace that the host end becomes a port of
	// as it is created, in the same request (no separate attach). A
	// missing master fails the creation and leaves nothing behind.
	MasterIndex int
}

// VethPair is the result of CreateVeth.
type VethPair struct {
	Host      netlink.Link // in the host namespace
	Container netlink.Link // in the container namespace
}

const vethNameTries = 10

// CreateVeth creates the pair with one netlink request in the host
// namespace: the host end there, the container end directly in the
// container namespace (it never appears in the host). It fails with
// *ExistsError when the container already has a link named ContainerName,
// or when HostName is given and taken.
func CreateVeth(host, cont *Namespace, v Veth) (*VethPair, error) {
	if v.ContainerName == "" {
		return nil, errors.New("creating veth: no container interface name given")
	}
	if v.MTU < 0 {
		return nil, fmt.Errorf("creating veth: invalid MTU %d", v.MTU)
	}
	if v.MasterIndex < 0 {
		return nil, fmt.Errorf("creating veth: invalid master ifindex %d", v.MasterIndex)
	}
	tries := 1
	if v.HostName == "" {
		tries = vethNameTries
	}
	for i := 0; i < tries; i++ {
		hostName := v.HostName
		if hostName == "" {
			var err error
			if hostName, err = RandomVethName(); err != nil {
				return nil, err
			}
		}
		err := newVeth(host, cont, v, hostName)
		if err == nil {
			return finishVeth(host, cont, v, hostName)
		}
		if !errors.Is(err, unix.EEXIST) {
			if v.MasterIndex != 0 {
				if _, lerr := ByIndex(host, v.MasterIndex); IsNotFound(lerr) {
					return nil, fmt.Errorf("creating veth pair %s (container) / %s (host): its master (ifindex %d) no longer exists in the host namespace: %w", v.ContainerName, hostName, v.MasterIndex, err)
				}
				if errors.Is(err, unix.EOPNOTSUPP) {
					return nil, fmt.Errorf("creating veth pair %s (container) / %s (host): link %d cannot take ports (not a bridge?): %w", v.ContainerName, hostName, v.MasterIndex, err)
				}
			}
			return nil, fmt.Errorf("creating veth pair %s (container) / %s (host): %w", v.ContainerName, hostName, err)
		}
		// Which name collided? The container's is fatal, the host's is retried.
		if _, lerr := ByName(cont, v.ContainerName); lerr == nil {
			return nil, &ExistsError{Name: v.ContainerName, Path: cont.Path}
		}
		if v.HostName != "" {
			return nil, &ExistsError{Name: hostName}
		}
	}
	return nil, fmt.Errorf("creating veth pair for %s: %d random host names were all taken", v.ContainerName, vethNameTries)
}

// newVeth sends the RTM_NEWLINK that creates the pair on host's socket: the
// host end is the new link (with its master, if any), the container end its
// peer, created in cont. It carries what the netlink library's LinkAdd of
// the same pair would, including the host end's txqueuelen 0.
func newVeth(host, cont *Namespace, v Veth, hostName string) error {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(hostName)))
	if v.MTU > 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(v.MTU))))
	}
	req.AddData(nl.NewRtAttr(unix.IFLA_TXQLEN, nl.Uint32Attr(0)))
	if v.MasterIndex != 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_MASTER, nl.Uint32Attr(uint32(v.MasterIndex))))
	}
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(unix.IFLA_INFO_KIND, nl.NonZeroTerminated("veth"))
	peer := info.AddRtAttr(unix.IFLA_INFO_DATA, nil).AddRtAttr(nl.VETH_INFO_PEER, nil)
	nl.NewIfInfomsgChild(peer, unix.AF_UNSPEC)
	peer.AddRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(v.ContainerName))
	if v.MTU > 0 {
		peer.AddRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(v.MTU)))
	}
	if v.ContainerMAC != nil {
		peer.AddRtAttr(unix.IFLA_ADDRESS, []byte(v.ContainerMAC))
	}
	peer.AddRtAttr(unix.IFLA_NET_NS_FD, nl.Uint32Attr(uint32(cont.Fd())))
	req.AddData(info)
	_, err := host.rawRequest(req, 0)
	return err
}

func finishVeth(host, cont *Namespace, v Veth, hostName string) (*VethPair, error) {
	hl, err := ByName(host, hostName)
	if err != nil {
		cleanupVeth(cont, v.ContainerName)
		return nil, fmt.Errorf("new host veth: %w", err)
	}
	if v.HostNoLinkLocal {
		// Before up, when the kernel would generate the address. A kernel
		// without IPv6 has nothing to turn off.
		if err := host.Handle.LinkSetIP6AddrGenMode(hl, nl.IN6_ADDR_GEN_MODE_NONE); err != nil && !errors.Is(err, unix.EAFNOSUPPORT) {
			cleanupVeth(cont, v.ContainerName)
			return nil, fmt.Errorf("turning off IPv6 link-local addressing on host veth %s: %w", hostName, err)
		}
	}
	if v.HostUp {
		if err := host.Handle.LinkSetUp(hl); err != nil {
			cleanupVeth(cont, v.ContainerName)
			return nil, fmt.Errorf("setting host veth %s up: %w", hostName, err)
		}
	}
	cl, err := ByName(cont, v.ContainerName)
	if err != nil {
		cleanupVeth(cont, v.ContainerName)
		return nil, fmt.Errorf("new container veth: %w", err)
	}
	return &VethPair{Host: hl, Container: cl}, nil
}

func cleanupVeth(cont *Namespace, name string) {
	if l, err := ByName(cont, name); err == nil {
		_ = cont.Handle.LinkDel(l)
	}
}

// PeerIndex returns the ifindex of a veth's peer (in the peer's namespace).
func PeerIndex(l netlink.Link) (int, error) {
	if _, ok := l.(*netlink.Veth); !ok {
		return 0, fmt.Errorf("%s is a %s, not a veth", l.Attrs().Name, l.Type())
	}
	if l.Attrs().ParentIndex == 0 {
		return 0, fmt.Errorf("veth %s reports no peer", l.Attrs().Name)
	}
	return l.Attrs().ParentIndex, nil
}

// Peer returns the host-side peer in ns of the veth l (which lives in
// another namespace).
func Peer(ns *Namespace, l netlink.Link) (netlink.Link, error) {
	idx, err := PeerIndex(l)
	if err != nil {
		return nil, err
	}
	p, err := ByIndex(ns, idx)
	if err != nil {
		return nil, fmt.Errorf("finding the peer (ifindex %d) of veth %s: %w", idx, l.Attrs().Name, err)
	}
	return p, nil
}

// DeleteByName deletes the link called name in ns and returns the
// addresses it had (for undoing masquerade and the like). A missing link is
// reported with an error for which IsNotFound is true.
func DeleteByName(ns *Namespace, name string) ([]netlink.Addr, error) {
	l, err := ByName(ns, name)
	if err != nil {
		return nil, err
	}
	addrs, err := Dump(func() ([]netlink.Addr, error) { return ns.Handle.AddrList(l, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, fmt.Errorf("listing addresses of %s: %w", name, err)
	}
	if err := ns.Handle.LinkDel(l); err != nil {
		return addrs, fmt.Errorf("deleting %s: %w", name, err)
	}
	return addrs, nil
}

// Rename renames the link to newName.
func Rename(ns *Namespace, l netlink.Link, newName string) error {
	if err := ns.Handle.LinkSetName(l, newName); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return &ExistsError{Name: newName, Path: ns.Path}
		}
		return fmt.Errorf("renaming %s to %s: %w", l.Attrs().Name, newName, err)
	}
	l.Attrs().Name = newName
	return nil
}

// SetMTU sets the link's MTU unless it already has it.
func SetMTU(ns *Namespace, l netlink.Link, mtu int) error {
	if mtu <= 0 || l.Attrs().MTU == mtu {
		return nil
	}
	if err := ns.Handle.LinkSetMTU(l, mtu); err != nil {
		return fmt.Errorf("setting MTU %d on %s: %w", mtu, l.Attrs().Name, err)
	}
	l.Attrs().MTU = mtu
	return nil
}

// SetMAC sets the link's hardware address unless it already has it.
func SetMAC(ns *Namespace, l netlink.Link, mac net.HardwareAddr) error {
	if mac == nil || l.Attrs().HardwareAddr.String() == mac.String() {
		return nil
	}
	if err := ns.Handle.LinkSetHardwareAddr(l, mac); err != nil {
		return fmt.Errorf("setting MAC %s on %s: %w", mac, l.Attrs().Name, err)
	}
	l.Attrs().HardwareAddr = mac
	return nil
}

// WaitOperUp returns the link with ifindex index in ns once its operational
// state is up, or an error after timeout. It does not sleep or poll: it
// returns at once when the link is already up, and otherwise waits for the
// kernel's link notifications.
func WaitOperUp(ns *Namespace, index int, timeout time.Duration) (netlink.Link, error) {
	l, err := ByIndex(ns, index)
	if err != nil {
		return nil, err
	}
	if l.Attrs().OperState == netlink.OperUp {
		return l, nil
	}
	ch := make(chan netlink.LinkUpdate, 16)
	done := make(chan struct{})
	defer close(done)
	nsh := ns.NsHandle()
	errc := make(chan error, 1)
	opts := netlink.LinkSubscribeOptions{ErrorCallback: func(e error) {
		select {
		case errc <- e:
		default:
		}
	}}
	if ns.Path != "" {
		opts.Namespace = &nsh
	}
	if err := netlink.LinkSubscribeWithOptions(ch, done, opts); err != nil {
		return nil, fmt.Errorf("subscribing to link updates: %w", err)
	}
	// The state may have changed between the first look and the subscription.
	if l, err = ByIndex(ns, index); err != nil {
		return nil, err
	}
	if l.Attrs().OperState == netlink.OperUp {
		return l, nil
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case u, ok := <-ch:
			if !ok {
				return nil, fmt.Errorf("link update subscription closed while waiting for %s", l.Attrs().Name)
			}
			if int(u.Index) == index && u.Link != nil && u.Link.Attrs().OperState == netlink.OperUp {
				return u.Link, nil
			}
		case err := <-errc:
			return nil, fmt.Errorf("waiting for %s to come up: %w", l.Attrs().Name, err)
		case <-timer.C:
			return nil, fmt.Errorf("%s is still %s after %s (is its peer up?)", l.Attrs().Name, l.Attrs().OperState, timeout)
		}
	}
}

// DeleteContainerLink deletes the link ifname in the namespace at nsPath and
// returns its global-scope addresses, with DEL's forgiving semantics: a
// namespace or link that is already gone is not an error. Deleting a veth
// end removes its peer too.
func DeleteContainerLink(nsPath, ifname string) ([]net.IPNet, error) {
	ns, err := Open(nsPath)
	if err != nil {
		if netns.IsNotExist(err) {
			return nil, nil
		}
		return nil, err
	}
	defer ns.Close()
	addrs, err := DeleteByName(ns, ifname)
	if err != nil && !IsNotFound(err) {
		return nil, err
	}
	var out []net.IPNet
	for _, a := range addrs {
		if a.IPNet != nil && a.Scope == int(netlink.SCOPE_UNIVERSE) {
			out = append(out, *a.IPNet)
		}
	}
	return out, nil
}

// DeleteContainerLinkAsync starts DeleteContainerLink in the background
// (veth teardown takes the kernel a while) and returns a function that
// waits for it. An empty nsPath deletes nothing.
func DeleteContainerLinkAsync(nsPath, ifname string) (wait func() ([]net.IPNet, error)) {
	type answer struct {
		addrs []net.IPNet
		err   error
	}
	ch := make(chan answer, 1)
	if nsPath == "" {
		ch <- answer{}
	} else {
		go func() {
			a, err := DeleteContainerLink(nsPath, ifname)
			ch <- answer{a, err}
		}()
	}
	var got *answer
	return func() ([]net.IPNet, error) {
		if got == nil {
			a := <-ch
			got = &a
		}
		return got.addrs, got.err
	}
}
