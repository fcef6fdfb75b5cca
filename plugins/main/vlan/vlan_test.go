package vlan_test

import (
	"net"
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

// newLab makes a lab for tests that create VLAN links (they skip on a
// kernel without 802.1Q and run under `make test-kernels`).
func newLab(t *testing.T) *linklab.Lab {
	t.Helper()
	kfeature.Require(t, kfeature.Vlan)
	return linklab.New(t, "vlan")
}

func vlanConf(l *linklab.Lab, name, master string, id int, ipam map[string]any) []byte {
	return l.Conf(name, map[string]any{"master": master, "vlanId": id, "ipam": ipam})
}

func vlanIn(t *testing.T, nsPath, name string) *netlink.Vlan {
	t.Helper()
	l := nstest.Link(t, nsPath, name)
	v, ok := l.(*netlink.Vlan)
	if !ok {
		t.Fatalf("%s in %s is a %s, not a vlan", name, nsPath, l.Type())
	}
	return v
}

func firstIP(t *testing.T, r *cni.Result) net.IP {
	t.Helper()
	if len(r.IPs) == 0 {
		t.Fatalf("result has no IPs: %+v", r)
	}
	return r.IPs[0].Address.IP
}

// Three containers hang off two uplinks that share one switch: c1 (VLAN 100
// on eth0) and c2 (VLAN 100 on eth1) reach each other by ICMP and TCP —
// their frames cross the switch tagged 100 — while c3 (VLAN 200 on eth1,
// same subnet) reaches neither.
func TestVlanSameIDReachesOtherIDDoesNot(t *testing.T) {
	l := newLab(t)
	eth0 := l.Uplink("eth0", 0)
	eth1 := l.Uplink("eth1", 0)
	ipam100 := map[string]any{"type": "host-local", "subnet": "10.1.20.0/24", "rangeStart": "10.1.20.10", "rangeEnd": "10.1.20.99"}
	ipam200 := map[string]any{"type": "host-local", "subnet": "10.1.20.0/24", "rangeStart": "10.1.20.100", "rangeEnd": "10.1.20.199"}
	c1, c2, c3 := l.Container(), l.Container(), l.Container()
	r1 := l.Add(linklab.Call{ID: "c1", Netns: c1}, vlanConf(l, "v100", "eth0", 100, ipam100))
	r2 := l.Add(linklab.Call{ID: "c2", Netns: c2}, vlanConf(l, "v100", "eth1", 100, ipam100))
	r3 := l.Add(linklab.Call{ID: "c3", Netns: c3}, vlanConf(l, "v200", "eth1", 200, ipam200))

	for _, tc := range []struct {
		ns     string
		id     int
		parent netlink.Link
	}{{c1, 100, eth0}, {c2, 100, eth1}, {c3, 200, eth1}} {
		v := vlanIn(t, tc.ns, "eth0")
		if v.VlanId != tc.id || v.ParentIndex != tc.parent.Attrs().Index || v.NetNsID < 0 {
			t.Fatalf("vlan id %d parent %d (netns id %d); want id %d on the host's %s (%d)",
				v.VlanId, v.ParentIndex, v.NetNsID, tc.id, tc.parent.Attrs().Name, tc.parent.Attrs().Index)
		}
		if v.HardwareAddr.String() != tc.parent.Attrs().HardwareAddr.String() {
			t.Errorf("vlan MAC %s; want its master's %s", v.HardwareAddr, tc.parent.Attrs().HardwareAddr)
		}
	}
	a1, a2, a3 := firstIP(t, r1), firstIP(t, r2), firstIP(t, r3)
	if a3.Equal(a1) || a3.Equal(a2) {
		t.Fatalf("c3 got %s, an address of VLAN 100", a3)
	}
	if _, err := probe.Ping(c1, a2, 3*time.Second); err != nil {
		t.Fatalf("VLAN 100 to VLAN 100: %v", err)
	}
	srv, err := probe.ListenTCP(c2, net.JoinHostPort(a2.String(), "7777"))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if seen, _, err := probe.TCPRoundTrip(c1, srv.Addr, 3*time.Second); err != nil || seen != a1.String() {
		t.Fatalf("TCP over VLAN 100: seen from %q, %v; want %s", seen, err, a1)
	}
	if _, err := probe.Ping(c3, a1, 500*time.Millisecond); err == nil {
		t.Fatal("VLAN 200 reached VLAN 100 (c1)")
	}
	if _, err := probe.Ping(c3, a2, 500*time.Millisecond); err == nil {
		t.Fatal("VLAN 200 reached VLAN 100 (c2)")
	}
}

// CHECK passes on an intact attachment and fails when the config's vlanId
// differs from the link's or the address is gone; DEL removes link and
// reservation and can be repeated, also once the namespace is gone.
func TestVlanCheckAndDel(t *testing.T) {
	l := newLab(t)
	l.Uplink("eth0", 1500)
	ctr := l.Container()
	ipam := map[string]any{"type": "host-local", "subnet": "10.1.21.0/24"}
	conf := l.Conf("v", map[string]any{"master": "eth0", "vlanId": 42, "mtu": 1400, "ipam": ipam})
	c := linklab.Call{ID: "c1", Netns: ctr}
	r := l.Add(c, conf)
	v := vlanIn(t, ctr, "eth0")
	if v.MTU != 1400 || v.Flags&net.FlagUp == 0 {
		t.Fatalf("vlan MTU %d up %v; want 1400 and up", v.MTU, v.Flags&net.FlagUp != 0)
	}
	if len(r.Interfaces) != 1 || r.Interfaces[0].Sandbox != ctr || r.Interfaces[0].Mac != v.HardwareAddr.String() || *r.IPs[0].Interface != 0 {
		t.Fatalf("result %+v; want one sandboxed interface with its MAC, IP on index 0", r.Interfaces)
	}
	c.Cmd = "CHECK"
	l.OK(c, linklab.WithPrev(t, conf, r))
	other := l.Conf("v", map[string]any{"master": "eth0", "vlanId": 43, "ipam": ipam})
	if e := l.Fails(c, linklab.WithPrev(t, other, r)); !strings.Contains(e.Msg, "vlan id 42") {
		t.Errorf("vlanId mismatch: %v", e)
	}
	h := nstest.Handle(t, ctr)
	lk, _ := h.LinkByName("eth0")
	if err := h.AddrDel(lk, &netlink.Addr{IPNet: &r.IPs[0].Address}); err != nil {
		t.Fatal(err)
	}
	if e := l.Fails(c, linklab.WithPrev(t, conf, r)); !strings.Contains(e.Msg, "address") {
		t.Errorf("removed address: %v", e)
	}
	c.Cmd = "DEL"
	l.OK(c, conf)
	l.OK(c, conf)
	if nstest.LinkExists(t, ctr, "eth0") || len(l.Reservations("v")) != 0 {
		t.Fatalf("DEL left link or reservations %v", l.Reservations("v"))
	}
	c.Netns = "/run/netns/knit-no-such-namespace"
	l.OK(c, conf)
}

// linkInContainer: the master is the container's own m0.
func TestVlanLinkInContainer(t *testing.T) {
	l := newLab(t)
	ctr := l.Container()
	m0 := l.UplinkIn(ctr, "m0", 0)
	conf := l.Conf("v", map[string]any{"master": "m0", "vlanId": 7, "linkInContainer": true,
		"ipam": map[string]any{"type": "host-local", "subnet": "10.1.22.0/24"}})
	c := linklab.Call{ID: "c1", Netns: ctr, IfName: "net1"}
	r := l.Add(c, conf)
	v := vlanIn(t, ctr, "net1")
	if v.VlanId != 7 || v.ParentIndex != m0.Attrs().Index || v.NetNsID >= 0 {
		t.Fatalf("vlan id %d parent %d (netns id %d); want 7 on m0 (%d) in the container itself", v.VlanId, v.ParentIndex, v.NetNsID, m0.Attrs().Index)
	}
	c.Cmd = "CHECK"
	l.OK(c, linklab.WithPrev(t, conf, r))
	c.Cmd = "DEL"
	l.OK(c, conf)
	if !nstest.LinkExists(t, ctr, "m0") || nstest.LinkExists(t, ctr, "net1") {
		t.Fatalf("after DEL: %v; want m0 kept, net1 gone", linklab.Links(t, ctr))
	}
}

// Bad input is refused before anything changes. None of these needs 802.1Q
// in the kernel: each fails before a link is created.
func TestVlanBadConfig(t *testing.T) {
	l := linklab.New(t, "vlan")
	l.Uplink("eth0", 1500)
	ipam := map[string]any{"type": "host-local", "subnet": "10.1.23.0/24"}
	cases := []struct {
		name string
		keys map[string]any
		want string
	}{
		{"no-master", map[string]any{"vlanId": 5, "ipam": ipam}, `"master" field is required`},
		{"id-too-big", map[string]any{"master": "eth0", "vlanId": 4095, "ipam": ipam}, "invalid VLAN ID 4095"},
		{"id-negative", map[string]any{"master": "eth0", "vlanId": -1, "ipam": ipam}, "invalid VLAN ID -1"},
		{"mtu", map[string]any{"master": "eth0", "vlanId": 5, "mtu": 9000, "ipam": ipam}, "master MTU(1500)"},
		{"missing-master", map[string]any{"master": "eth7", "vlanId": 5, "ipam": ipam}, `"eth7" not found`},
		{"no-ipam", map[string]any{"master": "eth0", "vlanId": 5}, "needs an ipam section"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctr := l.Container()
			conf := l.Conf("bad", tc.keys)
			e := l.Fails(linklab.Call{Cmd: "ADD", ID: "c1", Netns: ctr}, conf)
			if e.Code != cni.ErrInvalidNetworkConfig || !strings.Contains(e.Error(), tc.want) {
				t.Errorf("error %v (code %d); want code 7 mentioning %q", e, e.Code, tc.want)
			}
			if got := linklab.Links(t, ctr); len(got) != 1 {
				t.Errorf("container links %v; want only lo", got)
			}
			if got := l.Reservations("bad"); len(got) != 0 {
				t.Errorf("reservations %v after failed ADD", got)
			}
			// The runtime's DEL after the failed ADD succeeds.
			l.OK(linklab.Call{Cmd: "DEL", ID: "c1", Netns: ctr}, conf)
		})
	}
}
