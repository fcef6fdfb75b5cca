package ipvlan_test

import (
	"net"
	"os"
	"path/filepath"
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

// newLab makes a lab for tests that create ipvlans (they skip on a kernel
// without ipvlan and run under `make test-kernels`).
func newLab(t *testing.T) *linklab.Lab {
	t.Helper()
	kfeature.Require(t, kfeature.IPVlan)
	return linklab.New(t, "ipvlan")
}

func hostLocal(subnet string) map[string]any {
	return map[string]any{"type": "host-local", "subnet": subnet}
}

func ipvlanIn(t *testing.T, nsPath, name string) *netlink.IPVlan {
	t.Helper()
	l := nstest.Link(t, nsPath, name)
	iv, ok := l.(*netlink.IPVlan)
	if !ok {
		t.Fatalf("%s in %s is a %s, not an ipvlan", name, nsPath, l.Type())
	}
	return iv
}

func firstIP(t *testing.T, r *cni.Result) net.IP {
	t.Helper()
	if len(r.IPs) == 0 {
		t.Fatalf("result has no IPs: %+v", r)
	}
	return r.IPs[0].Address.IP
}

func reach(t *testing.T, from string, to net.IP) {
	t.Helper()
	if _, err := probe.Ping(from, to, 3*time.Second); err != nil {
		t.Fatalf("ping %s from %s: %v", to, from, err)
	}
}

// addrOn reports whether the container's link carries the address.
func addrOn(t *testing.T, nsPath, ifname string, a net.IPNet) bool {
	t.Helper()
	return slices.Contains(nstest.Addrs(t, nsPath, ifname), a.String())
}

// The talk's config exactly as written (no cniVersion, so 0.1.0 results)
// and at 1.1.0: the container gets an l2 ipvlan of eth0 sharing its MAC,
// with an address from 10.1.2.0/24; two such containers reach each other;
// CHECK (1.1.0) passes; DEL removes link and reservation, repeatably.
func TestIPVlanTalkConfig(t *testing.T) {
	const talk = `{"name":"mynet","type":"ipvlan","master":"eth0","ipam":{"type":"host-local","subnet":"10.1.2.0/24"}}`
	for _, version := range []string{"", "1.1.0"} {
		t.Run("v"+version, func(t *testing.T) {
			l := newLab(t)
			eth0 := l.Uplink("eth0", 0)
			keys := map[string]any{"master": "eth0", "ipam": hostLocal("10.1.2.0/24"), "cniVersion": version}
			conf := l.Conf("mynet", keys)
			if version == "" {
				// As in the talk, with only the data directory redirected.
				conf = []byte(strings.Replace(talk, `"subnet"`, `"dataDir":"`+l.DataDir+`","subnet"`, 1))
			}
			c1, c2 := l.Container(), l.Container()
			r1 := l.Add(linklab.Call{ID: "c1", Netns: c1}, conf)
			r2 := l.Add(linklab.Call{ID: "c2", Netns: c2}, conf)

			for _, ctr := range []string{c1, c2} {
				iv := ipvlanIn(t, ctr, "eth0")
				if iv.Mode != netlink.IPVLAN_MODE_L2 {
					t.Errorf("mode %d; want l2", iv.Mode)
				}
				if iv.ParentIndex != eth0.Attrs().Index || iv.NetNsID < 0 {
					t.Errorf("parent ifindex %d (netns id %d); want the host's eth0 (%d)", iv.ParentIndex, iv.NetNsID, eth0.Attrs().Index)
				}
				if iv.HardwareAddr.String() != eth0.Attrs().HardwareAddr.String() {
					t.Errorf("MAC %s; an ipvlan shares its master's %s", iv.HardwareAddr, eth0.Attrs().HardwareAddr)
				}
			}
			_, subnet, _ := net.ParseCIDR("10.1.2.0/24")
			a1, a2 := firstIP(t, r1), firstIP(t, r2)
			if !subnet.Contains(a1) || !subnet.Contains(a2) || !addrOn(t, c1, "eth0", r1.IPs[0].Address) {
				t.Fatalf("addresses %s, %s; want them from %s and on eth0", a1, a2, subnet)
			}
			reach(t, c1, a2)
			reach(t, c2, a1)

			c := linklab.Call{ID: "c1", Netns: c1}
			if version != "" {
				if len(r1.Interfaces) != 1 || r1.Interfaces[0].Sandbox != c1 || r1.Interfaces[0].Mac != eth0.Attrs().HardwareAddr.String() ||
					r1.IPs[0].Interface == nil || *r1.IPs[0].Interface != 0 {
					t.Fatalf("result %+v %+v; want one sandboxed interface with the master's MAC, IP on index 0", r1.Interfaces, r1.IPs[0])
				}
				c.Cmd = "CHECK"
				l.OK(c, linklab.WithPrev(t, conf, r1))
			}
			c.Cmd = "DEL"
			l.OK(c, conf)
			l.OK(c, conf)
			if nstest.LinkExists(t, c1, "eth0") {
				t.Error("eth0 left in the container after DEL")
			}
			if got := l.Reservations("mynet"); len(got) != 1 {
				t.Errorf("reservations %v; want only c2's", got)
			}
		})
	}
}

// Two containers on l2 ipvlans reach each other by ICMP and TCP; in l3 mode
// too (routed inside the master, no ARP); l3s reaches the kernel.
func TestIPVlanModesReachEachOther(t *testing.T) {
	for _, tc := range []struct {
		mode string
		want netlink.IPVlanMode
	}{{"l2", netlink.IPVLAN_MODE_L2}, {"l3", netlink.IPVLAN_MODE_L3}, {"l3s", netlink.IPVLAN_MODE_L3S}} {
		t.Run(tc.mode, func(t *testing.T) {
			l := newLab(t)
			l.Uplink("eth0", 0)
			conf := l.Conf("iv", map[string]any{"master": "eth0", "mode": tc.mode, "ipam": hostLocal("10.1.4.0/24")})
			c1, c2 := l.Container(), l.Container()
			r1 := l.Add(linklab.Call{ID: "c1", Netns: c1}, conf)
			r2 := l.Add(linklab.Call{ID: "c2", Netns: c2}, conf)
			if m := ipvlanIn(t, c1, "eth0").Mode; m != tc.want {
				t.Fatalf("mode %d; want %d (%s)", m, tc.want, tc.mode)
			}
			if tc.mode == "l3s" {
				return
			}
			a1, a2 := firstIP(t, r1), firstIP(t, r2)
			reach(t, c1, a2)
			srv, err := probe.ListenTCP(c2, net.JoinHostPort(a2.String(), "7777"))
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			seen, _, err := probe.TCPRoundTrip(c1, srv.Addr, 3*time.Second)
			if err != nil || seen != a1.String() {
				t.Fatalf("TCP round trip: seen from %q, %v; want %s", seen, err, a1)
			}
		})
	}
}

// Chained without ipam: the addresses come from prevResult and, with no
// master in the config, the master is prevResult's single interface.
func TestIPVlanChained(t *testing.T) {
	l := newLab(t)
	eth0 := l.Uplink("eth0", 0)
	l.Uplink("eth1", 0)
	ctr := l.Container()
	prev := &cni.Result{
		CNIVersion: "1.1.0",
		Interfaces: []*cni.Interface{{Name: "eth1"}},
		IPs:        []*cni.IPConfig{{Interface: cni.Int(0), Address: net.IPNet{IP: net.IPv4(10, 1, 12, 7), Mask: net.CIDRMask(24, 32)}}},
	}
	conf := linklab.WithPrev(t, l.Conf("chain", nil), prev)
	c := linklab.Call{ID: "c1", Netns: ctr}
	r := l.Add(c, conf)
	iv := ipvlanIn(t, ctr, "eth0")
	eth1 := nstest.Link(t, l.Host, "eth1")
	if iv.ParentIndex != eth1.Attrs().Index {
		t.Fatalf("parent ifindex %d; want prevResult's eth1 (%d), not eth0 (%d)", iv.ParentIndex, eth1.Attrs().Index, eth0.Attrs().Index)
	}
	if !addrOn(t, ctr, "eth0", prev.IPs[0].Address) {
		t.Fatalf("prevResult's address not on eth0: %v", nstest.Addrs(t, ctr, "eth0"))
	}
	if len(r.Interfaces) != 1 || r.Interfaces[0].Sandbox != ctr || *r.IPs[0].Interface != 0 {
		t.Fatalf("result %+v; want the ipvlan alone with the IP on index 0", r.Interfaces)
	}
	c.Cmd = "CHECK"
	l.OK(c, linklab.WithPrev(t, l.Conf("chain", nil), r))
	c.Cmd = "DEL"
	l.OK(c, conf)
	if nstest.LinkExists(t, ctr, "eth0") {
		t.Fatal("eth0 left after DEL")
	}

	// An explicit master wins over prevResult.
	l.Add(c, linklab.WithPrev(t, l.Conf("chain", map[string]any{"master": "eth0"}), prev))
	if p := ipvlanIn(t, ctr, "eth0").ParentIndex; p != eth0.Attrs().Index {
		t.Fatalf("parent ifindex %d; want eth0 (%d)", p, eth0.Attrs().Index)
	}
}

// Bad input is refused before anything changes. These need no ipvlan
// support in the kernel: every one fails before a link is created.
func TestIPVlanBadConfig(t *testing.T) {
	l := linklab.New(t, "ipvlan")
	l.Uplink("eth0", 1500)
	twoIfs := &cni.Result{CNIVersion: "1.1.0", Interfaces: []*cni.Interface{{Name: "a"}, {Name: "b"}},
		IPs: []*cni.IPConfig{{Address: net.IPNet{IP: net.IPv4(10, 1, 13, 2), Mask: net.CIDRMask(24, 32)}}}}
	noIPs := &cni.Result{CNIVersion: "1.1.0", Interfaces: []*cni.Interface{{Name: "eth0"}}}
	ipam := hostLocal("10.1.13.0/24")
	cases := []struct {
		name string
		conf []byte
		want string
	}{
		{"mode", l.Conf("bad", map[string]any{"master": "eth0", "mode": "bridge", "ipam": ipam}), "unknown ipvlan mode"},
		{"mtu", l.Conf("bad", map[string]any{"master": "eth0", "mtu": 1501, "ipam": ipam}), "master MTU(1500)"},
		{"master", l.Conf("bad", map[string]any{"master": "nope0", "ipam": ipam}), `"nope0" not found`},
		{"no-ipam", l.Conf("bad", map[string]any{"master": "eth0"}), "ipam"},
		{"prev-two-interfaces", linklab.WithPrev(t, l.Conf("bad", nil), twoIfs), "chained master failure"},
		{"prev-without-ips", linklab.WithPrev(t, l.Conf("bad", nil), noIPs), "prevResult with IPs"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctr := l.Container()
			e := l.Fails(linklab.Call{Cmd: "ADD", ID: "c1", Netns: ctr}, tc.conf)
			if e.Code != cni.ErrInvalidNetworkConfig || !strings.Contains(e.Error(), tc.want) {
				t.Errorf("error %v (code %d); want code 7 mentioning %q", e, e.Code, tc.want)
			}
			if got := linklab.Links(t, ctr); len(got) != 1 {
				t.Errorf("container links %v; want only lo", got)
			}
			if got := l.Reservations("bad"); len(got) != 0 {
				t.Errorf("reservations %v after failed ADD", got)
			}
		})
	}
}

// linkInContainer and CHECK: the ipvlan's parent is the container's m0;
// CHECK fails when the config's mode differs or the address is gone.
func TestIPVlanLinkInContainerAndCheck(t *testing.T) {
	l := newLab(t)
	ctr := l.Container()
	m0 := l.UplinkIn(ctr, "m0", 0)
	conf := l.Conf("iv", map[string]any{"master": "m0", "linkInContainer": true, "mode": "l3", "ipam": hostLocal("10.1.14.0/24")})
	c := linklab.Call{ID: "c1", Netns: ctr, IfName: "net1"}
	r := l.Add(c, conf)
	iv := ipvlanIn(t, ctr, "net1")
	if iv.ParentIndex != m0.Attrs().Index || iv.NetNsID >= 0 {
		t.Fatalf("parent ifindex %d (netns id %d); want m0's %d in the container itself", iv.ParentIndex, iv.NetNsID, m0.Attrs().Index)
	}
	c.Cmd = "CHECK"
	l.OK(c, linklab.WithPrev(t, conf, r))
	l2 := l.Conf("iv", map[string]any{"master": "m0", "linkInContainer": true, "mode": "l2", "ipam": hostLocal("10.1.14.0/24")})
	if e := l.Fails(c, linklab.WithPrev(t, l2, r)); !strings.Contains(e.Msg, "mode l3") {
		t.Errorf("mode mismatch: %v", e)
	}
	h := nstest.Handle(t, ctr)
	lk, _ := h.LinkByName("net1")
	if err := h.AddrDel(lk, &netlink.Addr{IPNet: &r.IPs[0].Address}); err != nil {
		t.Fatal(err)
	}
	if e := l.Fails(c, linklab.WithPrev(t, conf, r)); !strings.Contains(e.Msg, "address") {
		t.Errorf("removed address: %v", e)
	}
	c.Cmd = "DEL"
	l.OK(c, conf)
	if !nstest.LinkExists(t, ctr, "m0") || nstest.LinkExists(t, ctr, "net1") {
		t.Fatalf("after DEL: %v; want m0 kept, net1 gone", linklab.Links(t, ctr))
	}
}

// The talk's point: an ipvlan container cannot reach its host through the
// master, but with ptp as a second interface it can.
func TestIPVlanWithPtpReachesHost(t *testing.T) {
	l := newLab(t)
	if _, err := os.Stat(filepath.Join(l.Plugins, "ptp")); err != nil {
		t.Skip("knit-plugin has no ptp plugin")
	}
	eth0 := l.Uplink("eth0", 0)
	h := nstest.Handle(t, l.Host)
	if err := h.AddrAdd(eth0, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(10, 1, 2, 254), Mask: net.CIDRMask(24, 32)}}); err != nil {
		t.Fatal(err)
	}
	ctr := l.Container()
	l.Add(linklab.Call{ID: "c1", Netns: ctr}, l.Conf("mynet", map[string]any{"master": "eth0", "ipam": hostLocal("10.1.2.0/24")}))
	// Without ptp the master's address is out of reach (its ARP requests
	// leave on the wire, never reaching the master's own stack).
	if _, err := probe.Ping(ctr, net.IPv4(10, 1, 2, 254), 500*time.Millisecond); err == nil {
		t.Fatal("the ipvlan container reached the master's own address; ipvlan should isolate it")
	}
	pr := l.Add(linklab.Call{ID: "c1", Netns: ctr, IfName: "eth1", Type: "ptp"}, l.Conf("ptpnet", map[string]any{"type": "ptp", "ipam": hostLocal("10.1.3.0/24")}))
	var gw net.IP
	for _, ip := range pr.IPs {
		if ip.Gateway != nil {
			gw = ip.Gateway
		}
	}
	if gw == nil {
		t.Fatalf("ptp result has no gateway: %+v", pr.IPs)
	}
	reach(t, ctr, gw)
}

// STATUS and GC reach the IPAM plugin (no ipvlan needed: nothing is
// attached, GC releases a reservation made directly through host-local).
func TestIPVlanStatusAndGC(t *testing.T) {
	l := linklab.New(t, "ipvlan")
	keys := map[string]any{"master": "eth0", "ipam": hostLocal("10.1.15.0/24")}
	ctr := l.Container()
	l.Add(linklab.Call{ID: "stale", Netns: ctr, Type: "host-local"}, l.Conf("gc", keys))
	if got := l.Reservations("gc"); len(got) != 1 {
		t.Fatalf("reservations %v; want one", got)
	}
	l.OK(linklab.Call{Cmd: "STATUS"}, l.Conf("gc", keys))
	keys["cni.dev/valid-attachments"] = []map[string]string{}
	l.OK(linklab.Call{Cmd: "GC"}, l.Conf("gc", keys))
	if got := l.Reservations("gc"); len(got) != 0 {
		t.Fatalf("reservations after GC %v; want none", got)
	}
}
