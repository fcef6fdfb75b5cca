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
)

// veth creates a veth pair with one end in each namespace, addresses them
// and brings them up.
func veth(t *testing.T, aFD, bFD int, aName, bName, aAddr, bAddr string) {
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
		h          *netlink.Handle
		name, addr string
	}{{ha, aName, aAddr}, {hb, bName, bAddr}} {
		l, err := side.h.LinkByName(side.name)
		must(t, err)
		a, err := netlink.ParseAddr(side.addr)
		must(t, err)
		must(t, side.h.AddrAdd(l, a))
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
	veth(t, hostFD, ctrFD, "hv0", "eth0", "10.50.0.1/24", "10.50.0.2/24")
	veth(t, hostFD, outFD, "up0", "eth0", "192.168.77.1/24", "192.168.77.2/24")
	route(t, ctrFD, "0.0.0.0/0", "10.50.0.1")
	route(t, outFD, "10.50.0.0/24", "192.168.77.1")
	must(t, netns.Do(hostPath, func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644)
	}))

	srv, err := probe.ListenTCP(outPath, "192.168.77.2:0")
	must(t, err)
	defer srv.Close()
	local, err := probe.ListenTCP(hostPath, "10.50.0.1:0")
	must(t, err)
	defer local.Close()

	seen := func(addr string) string {
		t.Helper()
		from, _, err := probe.TCPRoundTrip(ctrPath, addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return from
	}
	if got := seen(srv.Addr); got != "10.50.0.2" {
		t.Fatalf("before masquerade the outside saw %s, want 10.50.0.2 (test topology broken)", got)
	}

	m := NewMasq(WithNetNS(hostFD), WithLockFile(filepath.Join(t.TempDir(), "nft.lock")))
	defer m.Close()
	o := Owner{Network: "trafficnet", ContainerID: "ctr1", IfName: "eth0"}
	must(t, m.Add(o, cidrs(t, "10.50.0.2/24")))
	if got := seen(srv.Addr); got != "192.168.77.1" {
		t.Fatalf("with masquerade the outside saw %s, want the host's 192.168.77.1", got)
	}
	// Traffic inside the container subnet is not masqueraded.
	if got := seen(local.Addr); got != "10.50.0.2" {
		t.Errorf("the host's address in the subnet saw %s, want 10.50.0.2 unmasqueraded", got)
	}
	must(t, m.Check(o, cidrs(t, "10.50.0.2/24")))

	must(t, m.Del(o, cidrs(t, "10.50.0.2/24")))
	if got := seen(srv.Addr); got != "10.50.0.2" {
		t.Fatalf("after Del the outside saw %s, want 10.50.0.2", got)
	}
}
