package link

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/knit-cni/knit/internal/netns"
	"github.com/knit-cni/knit/internal/nstest"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func openPair(t *testing.T) (host, cont *Namespace) {
	t.Helper()
	hp := nstest.New(t, "lh")
	cp := nstest.New(t, "lc")
	var err error
	if host, err = Open(hp); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(host.Close)
	if cont, err = Open(cp); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cont.Close)
	return host, cont
}

func TestOpenMissingNamespace(t *testing.T) {
	_, err := Open("/run/netns/knit-no-such-namespace")
	if !netns.IsNotExist(err) {
		t.Fatalf("Open(missing) = %v; want a not-exist error", err)
	}
}

// Namespace.Do runs in the namespace itself, and inline for the current one.
func TestNamespaceDo(t *testing.T) {
	inode := func(path string) uint64 {
		var st unix.Stat_t
		if err := unix.Stat(path, &st); err != nil {
			t.Fatal(err)
		}
		return st.Ino
	}
	threadNS := func(ns *Namespace) uint64 {
		var ino uint64
		if err := ns.Do(func() error { ino = inode("/proc/thread-self/ns/net"); return nil }); err != nil {
			t.Fatal(err)
		}
		return ino
	}
	_, cont := openPair(t)
	if got, want := threadNS(cont), inode(cont.Path); got != want {
		t.Errorf("Do ran in namespace inode %d; want %s's %d", got, cont.Path, want)
	}
	own, err := Current()
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	if got, want := threadNS(own), inode("/proc/self/ns/net"); got != want {
		t.Errorf("Current().Do ran in namespace inode %d; want the process's %d", got, want)
	}
}

func TestCreateVethPeerAndDelete(t *testing.T) {
	host, cont := openPair(t)
	mac, _ := net.ParseMAC("0a:58:0a:01:01:05")
	p, err := CreateVeth(host, cont, Veth{ContainerName: "eth0", MTU: 1400, ContainerMAC: mac, HostUp: true})
	if err != nil {
		t.Fatal(err)
	}
	hn := p.Host.Attrs().Name
	if !strings.HasPrefix(hn, "veth") || len(hn) != 12 {
		t.Errorf("host name %q; want veth + 8 hex digits", hn)
	}
	if p.Host.Attrs().MTU != 1400 || p.Container.Attrs().MTU != 1400 {
		t.Errorf("MTUs %d/%d; want 1400", p.Host.Attrs().MTU, p.Container.Attrs().MTU)
	}
	if p.Container.Attrs().HardwareAddr.String() != mac.String() {
		t.Errorf("container MAC %s; want %s", p.Container.Attrs().HardwareAddr, mac)
	}
	if _, err := host.Handle.LinkByName("eth0"); err == nil {
		t.Error("container end is visible in the host namespace")
	}
	peer, err := Peer(host, p.Container)
	if err != nil || peer.Attrs().Index != p.Host.Attrs().Index {
		t.Fatalf("Peer = %v, %v; want host index %d", peer, err, p.Host.Attrs().Index)
	}
	if hl, _ := host.Handle.LinkByName(hn); hl.Attrs().Flags&net.FlagUp == 0 {
		t.Error("host end not up")
	}

	// Same container name again: a clear ExistsError.
	_, err = CreateVeth(host, cont, Veth{ContainerName: "eth0"})
	var ee *ExistsError
	if !errors.As(err, &ee) || ee.Name != "eth0" {
		t.Fatalf("second CreateVeth = %v; want ExistsError for eth0", err)
	}

	addr := &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(10, 9, 8, 7), Mask: net.CIDRMask(24, 32)}}
	if err := cont.Handle.AddrAdd(p.Container, addr); err != nil {
		t.Fatal(err)
	}
	addrs, err := DeleteByName(cont, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, a := range addrs {
		if a.IP.Equal(addr.IP) {
			found = true
		}
	}
	if !found {
		t.Errorf("DeleteByName returned %v; want it to include %s", addrs, addr.IPNet)
	}
	if _, err := host.Handle.LinkByName(hn); !IsNotFound(err) {
		t.Errorf("host end still there after deleting the container end: %v", err)
	}
	if _, err := DeleteByName(cont, "eth0"); !IsNotFound(err) {
		t.Errorf("deleting again = %v; want not found", err)
	}
}

func TestBridgePortHairpinAndWaitOperUp(t *testing.T) {
	host, cont := openPair(t)
	br, created, err := EnsureBridge(host, Bridge{Name: "kbr0", MTU: 1450})
	if err != nil || !created {
		t.Fatalf("EnsureBridge = %v, %v", created, err)
	}
	if br.MTU != 1450 || br.Flags&net.FlagUp == 0 {
		t.Errorf("bridge MTU %d flags %v", br.MTU, br.Flags)
	}
	again, created, err := EnsureBridge(host, Bridge{Name: "kbr0", Promisc: true})
	if err != nil || created || again.Index != br.Index || again.Promisc != 1 {
		t.Fatalf("second EnsureBridge = %+v, %v, %v", again.Attrs(), created, err)
	}
	p, err := CreateVeth(host, cont, Veth{ContainerName: "eth0", HostUp: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := AttachPort(host, p.Host, br, Port{Hairpin: true, Isolated: true}); err != nil {
		t.Fatal(err)
	}
	pi, err := host.Handle.LinkGetProtinfo(p.Host)
	if err != nil {
		t.Fatal(err)
	}
	if !pi.Hairpin || !pi.Isolated {
		t.Errorf("protinfo %+v; want hairpin and isolated", pi)
	}
	// Host end stays down (no carrier) until the container end is up.
	if _, err := WaitOperUp(host, p.Host.Attrs().Index, 50*time.Millisecond); err == nil {
		t.Fatal("WaitOperUp succeeded while the peer is down")
	}
	if err := cont.Handle.LinkSetUp(p.Container); err != nil {
		t.Fatal(err)
	}
	l, err := WaitOperUp(host, p.Host.Attrs().Index, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if l.Attrs().MasterIndex != br.Index {
		t.Errorf("master %d; want %d", l.Attrs().MasterIndex, br.Index)
	}

	// A non-bridge link of the bridge's name is refused.
	if _, _, err := EnsureBridge(host, Bridge{Name: p.Host.Attrs().Name}); err == nil || !strings.Contains(err.Error(), "not a bridge") {
		t.Errorf("EnsureBridge on a veth = %v; want 'not a bridge'", err)
	}
}

func TestVlanFilteringDetected(t *testing.T) {
	host, _ := openPair(t)
	_, _, err := EnsureBridge(host, Bridge{Name: "kbrv", VlanFiltering: true})
	if errors.Is(err, ErrVlanFilteringUnsupported) {
		t.Skipf("kernel feature missing: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func TestRandomMAC(t *testing.T) {
	m, err := RandomMAC()
	if err != nil {
		t.Fatal(err)
	}
	if m[0]&1 != 0 || m[0]&2 == 0 {
		t.Errorf("%s is not a unicast locally administered address", m)
	}
}

// HostNoLinkLocal leaves the host end without an IPv6 address once up;
// without it the kernel gives the host end its link-local address.
func TestCreateVethHostNoLinkLocal(t *testing.T) {
	host, cont := openPair(t)
	v6 := func(l netlink.Link) int {
		addrs, err := host.Handle.AddrList(l, netlink.FAMILY_V6)
		if err != nil {
			t.Fatal(err)
		}
		return len(addrs)
	}
	p, err := CreateVeth(host, cont, Veth{ContainerName: "eth0", HostUp: true, HostNoLinkLocal: true})
	if err != nil {
		t.Fatal(err)
	}
	q, err := CreateVeth(host, cont, Veth{ContainerName: "eth1", HostUp: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []netlink.Link{p.Container, q.Container} {
		if err := cont.Handle.LinkSetUp(c); err != nil {
			t.Fatal(err)
		}
	}
	// The kernel adds the link-local address once the carrier is up, which
	// linkwatch reports asynchronously: wait for the plain end's (at most
	// 5 s), by then the other end has had the same chance.
	for deadline := time.Now().Add(5 * time.Second); v6(q.Host) == 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := v6(q.Host); n != 1 {
		t.Fatalf("plain host end has %d IPv6 addresses, want its link-local (is IPv6 off in this kernel?)", n)
	}
	if n := v6(p.Host); n != 0 {
		t.Errorf("host end with HostNoLinkLocal has %d IPv6 addresses, want 0", n)
	}
}
