package dummy_test

import (
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/knit-cni/knit/internal/kfeature"
	"github.com/knit-cni/knit/internal/nstest"
	"github.com/knit-cni/knit/internal/probe"
	"github.com/knit-cni/knit/pkg/cni"
	"github.com/knit-cni/knit/plugins/main/internal/linklab"
	"github.com/vishvananda/netlink"
)

func TestMain(m *testing.M) { nstest.Main(m) }

func newLab(t *testing.T) *linklab.Lab {
	t.Helper()
	kfeature.Require(t, kfeature.Dummy)
	return linklab.New(t, "dummy")
}

func ipam(subnet string) map[string]any {
	return map[string]any{"type": "host-local", "subnet": subnet,
		"routes": []map[string]any{{"dst": "192.0.2.0/24"}}}
}

// ADD makes a dummy eth0 in the container with the IPAM address and route
// (the container answers on it); the result names it with its MAC and
// sandbox; CHECK passes and then notices a removed address and route; DEL
// removes link and reservation and can be repeated.
func TestDummyAddCheckDel(t *testing.T) {
	for _, version := range []string{"1.1.0", "0.4.0"} {
		t.Run(version, func(t *testing.T) {
			l := newLab(t)
			ctr := l.Container()
			conf := l.Conf("dn", map[string]any{"cniVersion": version, "ipam": ipam("10.1.30.0/24")})
			c := linklab.Call{ID: "c1", Netns: ctr}
			r := l.Add(c, conf)
			lk := nstest.Link(t, ctr, "eth0")
			if _, ok := lk.(*netlink.Dummy); !ok {
				t.Fatalf("eth0 is a %s; want dummy", lk.Type())
			}
			if len(r.Interfaces) != 1 || r.Interfaces[0].Name != "eth0" || r.Interfaces[0].Sandbox != ctr ||
				r.Interfaces[0].Mac != lk.Attrs().HardwareAddr.String() || len(r.IPs) != 1 || *r.IPs[0].Interface != 0 {
				t.Fatalf("result %+v %+v", r.Interfaces, r.IPs)
			}
			if lk.Attrs().Flags&net.FlagUp == 0 || !slices.Contains(nstest.Addrs(t, ctr, "eth0"), r.IPs[0].Address.String()) {
				t.Fatalf("eth0 up=%v addrs %v; want up with %s", lk.Attrs().Flags&net.FlagUp != 0, nstest.Addrs(t, ctr, "eth0"), r.IPs[0].Address.String())
			}
			h := nstest.Handle(t, ctr)
			lo, err := h.LinkByName("lo")
			if err != nil {
				t.Fatal(err)
			}
			if err := h.LinkSetUp(lo); err != nil { // local delivery goes through lo
				t.Fatal(err)
			}
			if _, err := probe.Ping(ctr, r.IPs[0].Address.IP, 2*time.Second); err != nil {
				t.Fatalf("the container does not answer on its dummy address: %v", err)
			}
			routes, _ := h.RouteList(lk, netlink.FAMILY_V4)
			found := false
			for _, rt := range routes {
				found = found || rt.Dst != nil && rt.Dst.String() == "192.0.2.0/24"
			}
			if !found {
				t.Fatalf("route to 192.0.2.0/24 missing: %v", routes)
			}

			prev := linklab.WithPrev(t, conf, r)
			c.Cmd = "CHECK"
			l.OK(c, prev)
			if err := h.RouteDel(&netlink.Route{LinkIndex: lk.Attrs().Index, Dst: &net.IPNet{IP: net.IPv4(192, 0, 2, 0), Mask: net.CIDRMask(24, 32)}, Gw: r.IPs[0].Gateway}); err != nil {
				t.Fatal(err)
			}
			if e := l.Fails(c, prev); !strings.Contains(e.Msg, "route") {
				t.Errorf("removed route: %v", e)
			}
			if err := h.AddrDel(lk, &netlink.Addr{IPNet: &r.IPs[0].Address}); err != nil {
				t.Fatal(err)
			}
			if e := l.Fails(c, prev); !strings.Contains(e.Msg, "address") {
				t.Errorf("removed address: %v", e)
			}
			c.Cmd = "DEL"
			l.OK(c, prev)
			l.OK(c, conf)
			if nstest.LinkExists(t, ctr, "eth0") || len(l.Reservations("dn")) != 0 {
				t.Fatalf("DEL left the link or reservations %v", l.Reservations("dn"))
			}
		})
	}
}

// A name already taken in the container: code 4, the existing link is
// untouched and no reservation is left.
func TestDummyNameClash(t *testing.T) {
	l := newLab(t)
	ctr := l.Container()
	conf := l.Conf("dn", map[string]any{"ipam": ipam("10.1.31.0/24")})
	l.Add(linklab.Call{ID: "c1", Netns: ctr}, conf)
	idx := nstest.Link(t, ctr, "eth0").Attrs().Index
	e := l.Fails(linklab.Call{Cmd: "ADD", ID: "c2", Netns: ctr}, conf)
	if e.Code != cni.ErrInvalidEnvironmentVariables || !strings.Contains(e.Error(), "already exists") {
		t.Fatalf("clash: %v; want code 4 'already exists'", e)
	}
	if nstest.Link(t, ctr, "eth0").Attrs().Index != idx || len(l.Reservations("dn")) != 1 {
		t.Fatalf("the clash changed things: links %v reservations %v", linklab.Links(t, ctr), l.Reservations("dn"))
	}
}

// Without ipam, ADD fails (code 7) before creating anything; this needs no
// dummy support in the kernel.
func TestDummyRequiresIPAM(t *testing.T) {
	l := linklab.New(t, "dummy")
	ctr := l.Container()
	e := l.Fails(linklab.Call{Cmd: "ADD", ID: "c1", Netns: ctr}, l.Conf("dn", nil))
	if e.Code != cni.ErrInvalidNetworkConfig || !strings.Contains(e.Msg, "ipam") {
		t.Fatalf("no ipam: %v; want code 7 about ipam", e)
	}
	if got := linklab.Links(t, ctr); len(got) != 1 {
		t.Fatalf("container links %v; want only lo", got)
	}
	// STATUS and GC without ipam have nothing to ask and succeed.
	l.OK(linklab.Call{Cmd: "STATUS"}, l.Conf("dn", nil))
	l.OK(linklab.Call{Cmd: "GC"}, l.Conf("dn", nil))
}
