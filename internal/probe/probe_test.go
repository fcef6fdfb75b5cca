package probe

import (
	"net"
	"testing"
	"time"

	"github.com/knit-cni/knit/internal/nstest"
	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
)

// pair links two fresh namespaces with a veth pair 10.77.0.1/24 <-> 10.77.0.2/24.
func pair(t *testing.T) (a, b string) {
	t.Helper()
	a, b = nstest.New(t, "pra"), nstest.New(t, "prb")
	ha, _ := vnetns.GetFromPath(a)
	hb, _ := vnetns.GetFromPath(b)
	defer ha.Close()
	defer hb.Close()
	na, err := netlink.NewHandleAt(ha)
	if err != nil {
		t.Fatal(err)
	}
	defer na.Close()
	nb, err := netlink.NewHandleAt(hb)
	if err != nil {
		t.Fatal(err)
	}
	defer nb.Close()
	if err := na.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "p0"}, PeerName: "p1", PeerNamespace: netlink.NsFd(hb)}); err != nil {
		t.Fatal(err)
	}
	for _, x := range []struct {
		h          *netlink.Handle
		name, addr string
	}{{na, "p0", "10.77.0.1/24"}, {nb, "p1", "10.77.0.2/24"}} {
		l, err := x.h.LinkByName(x.name)
		if err != nil {
			t.Fatal(err)
		}
		ad, _ := netlink.ParseAddr(x.addr)
		if err := x.h.AddrAdd(l, ad); err != nil {
			t.Fatal(err)
		}
		if err := x.h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	return a, b
}

func TestPingAndTCP(t *testing.T) {
	a, b := pair(t)
	if _, err := Ping(a, net.ParseIP("10.77.0.2"), 2*time.Second); err != nil {
		t.Fatalf("ping across the veth: %v", err)
	}
	if _, err := Ping(a, net.ParseIP("10.77.0.9"), 300*time.Millisecond); err == nil {
		t.Fatal("ping to an absent address succeeded")
	}
	srv, err := ListenTCP(b, "10.77.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	from, _, err := TCPRoundTrip(a, srv.Addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if from != "10.77.0.1" {
		t.Fatalf("server saw %q, want 10.77.0.1", from)
	}
}
