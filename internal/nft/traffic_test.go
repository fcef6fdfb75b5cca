package nft

import (
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/knit-cni/knit/internal/netns"
	"github.com/knit-cni/knit/internal/probe"
	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// veth creates a veth pair with one end in each namespace, addresses them
// and brings them up.
func veth(t *testing.T, aFD, bFD int, aName, bName string, aAddrs, bAddrs []string) {
	t.Helper()
	ha, err := netlink.NewHandleAt(vnetns.NsHandle(aFD))
	must(t, err)
	defer ha.Close()
	hb, err := netlink.NewHandleAt(vnetns.NsHandle(bFD))
	must(t, err)
	defer hb.Close()
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: aName}, PeerName: bName, PeerNamespace: netlink.NsFd(bFD)}
	if err := ha.LinkAdd(v); err != nil {
		t.Fatalf("creating veth %s/%s: %v", aName, bName, err)
	}
	for _, side := range []struct {
		h     *netlink.Handle
		name  string
		addrs []string
	}{{ha, aName, aAddrs}, {hb, bName, bAddrs}} {
		l, err := side.h.LinkByName(side.name)
		must(t, err)
		for _, s := range side.addrs {
			a, err := netlink.ParseAddr(s)
			must(t, err)
			a.Flags = unix.IFA_F_NODAD // usable at once, no duplicate address detection
			must(t, side.h.AddrAdd(l, a))
		}
		must(t, side.h.LinkSetUp(l))
	}
}

func route(t *testing.T, fd int, dst, via string) {
	t.Helper()
	h, err := netlink.NewHandleAt(vnetns.NsHandle(fd))
	must(t, err)
	defer h.Close()
	_, d, err := net.ParseCIDR(dst)
	must(t, err)
	must(t, h.RouteAdd(&netlink.Route{Dst: d, Gw: net.ParseIP(via)}))
}

func setLoUp(t *testing.T, fd int) {
	h, err := netlink.NewHandleAt(vnetns.NsHandle(fd))
	must(t, err)
	defer h.Close()
	lo, err := h.LinkByName("lo")
	must(t, err)
	must(t, h.LinkSetUp(lo))
}

// TestMasqueradeHappens sends TCP from a "container" through a "host" to an
// "outside" namespace. The outside has a route back to the container
// subnet, so without masquerade it sees the container's address; with it,
// the host's.
func TestMasqueradeHappens(t *testing.T) {
	hostPath, hostFD := testNS(t, "nfh")
	ctrPath, ctrFD := testNS(t, "nfc")
	outPath, outFD := testNS(t, "nfo")
	for _, fd := range []int{hostFD, ctrFD, outFD} {
		setLoUp(t, fd)
	}
	veth(t, hostFD, ctrFD, "hv0", "eth0", []string{"10.50.0.1/24", "fd00:50::1/64"}, []string{"10.50.0.2/24", "fd00:50::2/64"})
	veth(t, hostFD, outFD, "up0", "eth0", []string{"192.168.77.1/24", "fd00:77::1/64"}, []string{"192.168.77.2/24", "fd00:77::2/64"})
	route(t, ctrFD, "0.0.0.0/0", "10.50.0.1")
	route(t, ctrFD, "::/0", "fd00:50::1")
	route(t, outFD, "10.50.0.0/24", "192.168.77.1")
	route(t, outFD, "fd00:50::/64", "fd00:77::1")
	must(t, netns.Do(hostPath, func() error {
		if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
			return err
		}
		return os.WriteFile("/proc/sys/net/ipv6/conf/all/forwarding", []byte("1"), 0o644)
	}))

	listen := func(ns, addr string) string {
		s, err := probe.ListenTCP(ns, addr)
		must(t, err)
		t.Cleanup(func() { s.Close() })
		return s.Addr
	}
	out4, out6 := listen(outPath, "192.168.77.2:0"), listen(outPath, "[fd00:77::2]:0")
	local4 := listen(hostPath, "10.50.0.1:0")

	seen := func(addr string) string {
		t.Helper()
		// The first connection may need a SYN retransmit (~1 s) while the
		// kernel's linkwatch activates the fresh veths; under a loaded CI
		// run the host's neighbour discovery toward a fresh veth has also
		// failed once (connect: no route to host), so an error is retried
		// until a deadline.
		deadline := time.Now().Add(15 * time.Second)
		for {
			from, _, err := probe.TCPRoundTrip(ctrPath, addr, 5*time.Second)
			if err == nil {
				return from
			}
			if time.Now().After(deadline) {
				t.Fatal(err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	if got := seen(out4); got != "10.50.0.2" {
		t.Fatalf("before masquerade the outside saw %s, want 10.50.0.2 (test topology broken)", got)
	}
	if got := seen(out6); got != "fd00:50::2" {
		t.Fatalf("before masquerade the outside saw %s, want fd00:50::2 (test topology broken)", got)
	}

	m := NewMasq(WithNetNS(hostFD), WithLockFile(filepath.Join(t.TempDir(), "nft.lock")))
	defer m.Close()
	o := Owner{Network: "trafficnet", ContainerID: "ctr1", IfName: "eth0"}
	addrs := cidrs(t, "10.50.0.2/24", "fd00:50::2/64")
	must(t, m.Add(o, addrs))
	if got := seen(out4); got != "192.168.77.1" {
		t.Fatalf("with masquerade the outside saw %s, want the host's 192.168.77.1", got)
	}
	if got := seen(out6); got != "fd00:77::1" {
		t.Fatalf("with masquerade the outside saw %s, want the host's fd00:77::1", got)
	}
	// Traffic inside the container subnet is not masqueraded.
	if got := seen(local4); got != "10.50.0.2" {
		t.Errorf("the host's address in the subnet saw %s, want 10.50.0.2 unmasqueraded", got)
	}
	must(t, m.Check(o, addrs))

	must(t, m.Del(o, addrs))
	if got := seen(out4); got != "10.50.0.2" {
		t.Fatalf("after Del the outside saw %s, want 10.50.0.2", got)
	}
	if got := seen(out6); got != "fd00:50::2" {
		t.Fatalf("after Del the outside saw %s, want fd00:50::2", got)
	}
}
