package vrf_test

import (
	"encoding/json"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/knit-cni/knit/internal/kfeature"
	"github.com/knit-cni/knit/internal/nstest"
	"github.com/knit-cni/knit/pkg/cni"
	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { nstest.Main(m) }

type lab struct {
	t                   *testing.T
	host, cont, plugins string
}

func newLab(t *testing.T) *lab {
	t.Helper()
	nstest.RequireRoot(t)
	host, cont := nstest.HostAndContainer(t, "vrf")
	return &lab{t: t, host: host, cont: cont, plugins: nstest.Plugins(t)}
}

func (l *lab) conf(keys map[string]any, prev *cni.Result) []byte {
	m := map[string]any{"cniVersion": "1.1.0", "name": "vrfnet", "type": "vrf"}
	for k, v := range keys {
		m[k] = v
	}
	if prev != nil {
		enc, err := prev.Encode("1.1.0")
		if err != nil {
			l.t.Fatal(err)
		}
		m["prevResult"] = json.RawMessage(enc)
	}
	out, _ := json.Marshal(m)
	return out
}

func (l *lab) exec(cmd, ifname string, stdin []byte) nstest.PluginRun {
	l.t.Helper()
	env := map[string]string{"CNI_CONTAINERID": "c-" + ifname, "CNI_NETNS": l.cont, "CNI_IFNAME": ifname}
	return nstest.Exec(l.t, l.host, l.plugins, "vrf", cmd, env, stdin)
}

func (l *lab) ok(cmd, ifname string, stdin []byte) []byte {
	l.t.Helper()
	r := l.exec(cmd, ifname, stdin)
	if r.ExitCode != 0 {
		l.t.Fatalf("%s %s failed (exit %d): %s", cmd, ifname, r.ExitCode, r.Stdout)
	}
	return r.Stdout
}

func (l *lab) fails(cmd, ifname string, stdin []byte) *cni.Error {
	l.t.Helper()
	r := l.exec(cmd, ifname, stdin)
	if r.ExitCode == 0 {
		l.t.Fatalf("%s %s succeeded; want failure", cmd, ifname)
	}
	var e cni.Error
	if err := json.Unmarshal(r.Stdout, &e); err != nil {
		l.t.Fatalf("%s: not a CNI error: %s", cmd, r.Stdout)
	}
	return &e
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func cidr(s string) net.IPNet {
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	n.IP = ip
	return *n
}

// iface makes a veth end called name in the container (peer in the host,
// up), with a v4 and a v6 address and a gateway route per family, as a
// main plugin would, and returns the matching prevResult.
func (l *lab) iface(name string, n int) *cni.Result {
	l.t.Helper()
	h := nstest.Handle(l.t, l.cont)
	hfd, err := vnetns.GetFromPath(l.host)
	if err != nil {
		l.t.Fatal(err)
	}
	defer hfd.Close()
	attrs := netlink.NewLinkAttrs()
	attrs.Name = name
	must(l.t, h.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: name + "h", PeerNamespace: netlink.NsFd(int(hfd))}))
	lk, err := h.LinkByName(name)
	if err != nil {
		l.t.Fatal(err)
	}
	v4 := cidr("10.93." + strconv.Itoa(n) + ".2/24")
	v6 := cidr("2001:db8:93:" + strconv.Itoa(n) + "::2/64")
	must(l.t, h.AddrAdd(lk, &netlink.Addr{IPNet: &v4}))
	must(l.t, h.AddrAdd(lk, &netlink.Addr{IPNet: &v6, Flags: unix.IFA_F_NODAD}))
	must(l.t, h.LinkSetUp(lk))
	gw4 := net.ParseIP("10.93." + strconv.Itoa(n) + ".1")
	gw6 := net.ParseIP("2001:db8:93:" + strconv.Itoa(n) + "::1")
	r4 := cidr("10.200." + strconv.Itoa(n) + ".0/24")
	r6 := cidr("2001:db8:200:" + strconv.Itoa(n) + "::/64")
	must(l.t, h.RouteAdd(&netlink.Route{LinkIndex: lk.Attrs().Index, Dst: &r4, Gw: gw4}))
	must(l.t, h.RouteAdd(&netlink.Route{LinkIndex: lk.Attrs().Index, Dst: &r6, Gw: gw6}))
	return &cni.Result{CNIVersion: "1.1.0",
		Interfaces: []*cni.Interface{{Name: name, Mac: lk.Attrs().HardwareAddr.String(), Sandbox: l.cont}},
		IPs:        []*cni.IPConfig{{Interface: cni.Int(0), Address: v4, Gateway: gw4}, {Interface: cni.Int(0), Address: v6, Gateway: gw6}},
		Routes:     []*cni.Route{{Dst: r4, GW: gw4}, {Dst: r6, GW: gw6}},
	}
}

// routesIn lists the destinations of table's routes through link name.
func (l *lab) routesIn(table int, name string) []string {
	l.t.Helper()
	h := nstest.Handle(l.t, l.cont)
	lk := nstest.Link(l.t, l.cont, name)
	rs, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: table, LinkIndex: lk.Attrs().Index},
		netlink.RT_FILTER_TABLE|netlink.RT_FILTER_OIF)
	if err != nil {
		l.t.Fatal(err)
	}
	var out []string
	for _, r := range rs {
		if r.Dst != nil {
			out = append(out, r.Dst.String())
		}
	}
	return out
}

func (l *lab) vrf(name string) *netlink.Vrf {
	l.t.Helper()
	lk, err := nstest.Handle(l.t, l.cont).LinkByName(name)
	if err != nil {
		return nil
	}
	v, ok := lk.(*netlink.Vrf)
	if !ok {
		l.t.Fatalf("%s is a %s", name, lk.Type())
	}
	return v
}

// TestVRFRoutesLandInTable: the interface is enslaved to a new VRF with
// the lowest free table, keeps its IPv6 address, and its routes land in
// the VRF table; a second interface joins; a different table is refused;
// DEL deletes the VRF with its last member.
func TestVRFRoutesLandInTable(t *testing.T) {
	kfeature.Require(t, kfeature.VRF)
	l := newLab(t)
	// A VRF that already uses table 1: the new one must pick 2.
	h := nstest.Handle(t, l.cont)
	attrs := netlink.NewLinkAttrs()
	attrs.Name = "blue"
	must(t, h.LinkAdd(&netlink.Vrf{LinkAttrs: attrs, Table: 1}))

	prev := l.iface("eth0", 1)
	conf := l.conf(map[string]any{"vrfname": "red"}, prev)
	out := l.ok("ADD", "eth0", conf)
	res, err := cni.ParseResult(out, "1.1.0")
	if err != nil || len(res.IPs) != 2 || len(res.Routes) != 2 {
		t.Fatalf("prevResult not passed through: %v %s", err, out)
	}
	red := l.vrf("red")
	if red == nil || red.Table != 2 || red.Flags&net.FlagUp == 0 {
		t.Fatalf("VRF red: %+v, want up with table 2", red)
	}
	if m := nstest.Link(t, l.cont, "eth0").Attrs().MasterIndex; m != red.Index {
		t.Fatalf("eth0 master %d, want red (%d)", m, red.Index)
	}
	if got := nstest.Addrs(t, l.cont, "eth0"); !slices.Contains(got, "2001:db8:93:1::2/64") || !slices.Contains(got, "10.93.1.2/24") {
		t.Errorf("eth0 addresses after enslave %v: the IPv6 address must be restored", got)
	}
	got := l.routesIn(2, "eth0")
	for _, want := range []string{"10.200.1.0/24", "2001:db8:200:1::/64", "10.93.1.0/24"} {
		if !slices.Contains(got, want) {
			t.Errorf("VRF table 2 lacks %s: %v", want, got)
		}
	}
	if main := l.routesIn(unix.RT_TABLE_MAIN, "eth0"); slices.Contains(main, "10.200.1.0/24") {
		t.Errorf("route still in the main table: %v", main)
	}
	l.ok("CHECK", "eth0", conf)

	// A second interface joins the same VRF (table given and matching).
	prev1 := l.iface("eth1", 2)
	conf1 := l.conf(map[string]any{"vrfname": "red", "table": 2}, prev1)
	l.ok("ADD", "eth1", conf1)
	if !slices.Contains(l.routesIn(2, "eth1"), "10.200.2.0/24") {
		t.Error("eth1's route not in the VRF table")
	}
	// Another table for an existing VRF is refused, and eth2 stays free.
	prev2 := l.iface("eth2", 3)
	if e := l.fails("ADD", "eth2", l.conf(map[string]any{"vrfname": "red", "table": 7}, prev2)); !strings.Contains(e.Msg, "different routing table") {
		t.Errorf("table clash: %+v", e)
	}
	if nstest.Link(t, l.cont, "eth2").Attrs().MasterIndex != 0 {
		t.Error("refused ADD enslaved eth2")
	}

	// CHECK notices a released interface.
	must(t, h.LinkSetNoMaster(nstest.Link(t, l.cont, "eth1")))
	if e := l.fails("CHECK", "eth1", conf1); !strings.Contains(e.Msg, "associated") {
		t.Errorf("CHECK after release: %+v", e)
	}
	must(t, h.LinkSetMasterByIndex(nstest.Link(t, l.cont, "eth1"), red.Index))

	l.ok("DEL", "eth0", conf)
	if l.vrf("red") == nil {
		t.Fatal("VRF deleted while eth1 is still a member")
	}
	if nstest.Link(t, l.cont, "eth0").Attrs().MasterIndex != 0 {
		t.Error("eth0 still enslaved after DEL")
	}
	l.ok("DEL", "eth1", conf1)
	if l.vrf("red") != nil {
		t.Error("VRF left after its last member's DEL")
	}
	if l.vrf("blue") == nil {
		t.Error("DEL deleted a VRF it does not own")
	}
	l.ok("DEL", "eth1", conf1)
}

// TestVRFBadInput needs no VRF support: everything here is refused
// before a VRF would be made, and nothing changes.
func TestVRFBadInput(t *testing.T) {
	l := newLab(t)
	prev := l.iface("eth0", 4)
	if e := l.fails("ADD", "eth0", l.conf(map[string]any{}, prev)); e.Code != cni.ErrInvalidNetworkConfig || !strings.Contains(e.Msg, "vrf name") {
		t.Errorf("no vrfname: %+v", e)
	}
	if e := l.fails("ADD", "eth0", l.conf(map[string]any{"vrfname": "red"}, nil)); e.Code != cni.ErrInvalidNetworkConfig || !strings.Contains(e.Msg, "prevResult") {
		t.Errorf("no prevResult: %+v", e)
	}
	if e := l.fails("ADD", "eth0", l.conf(map[string]any{"vrfname": "red", "table": 254}, prev)); e.Code != cni.ErrInvalidNetworkConfig {
		t.Errorf("main table: %+v", e)
	}
	if e := l.fails("ADD", "nosuch0", l.conf(map[string]any{"vrfname": "red"}, prev)); e.Code != cni.ErrInvalidNetworkConfig {
		t.Errorf("missing interface: %+v", e)
	}
	// An interface with a master already is refused.
	h := nstest.Handle(t, l.cont)
	attrs := netlink.NewLinkAttrs()
	attrs.Name = "br0"
	must(t, h.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}))
	br := nstest.Link(t, l.cont, "br0")
	must(t, h.LinkSetMasterByIndex(nstest.Link(t, l.cont, "eth0"), br.Attrs().Index))
	if e := l.fails("ADD", "eth0", l.conf(map[string]any{"vrfname": "red"}, prev)); !strings.Contains(e.Msg, "already a master set: br0") {
		t.Errorf("enslaved interface: %+v", e)
	}
	// A non-VRF link of that name is refused.
	must(t, h.LinkSetNoMaster(nstest.Link(t, l.cont, "eth0")))
	if e := l.fails("ADD", "eth0", l.conf(map[string]any{"vrfname": "br0"}, prev)); !strings.Contains(e.Msg, "not a VRF") {
		t.Errorf("vrfname names a bridge: %+v", e)
	}
	if nstest.LinkExists(t, l.cont, "red") || nstest.Link(t, l.cont, "eth0").Attrs().MasterIndex != 0 {
		t.Error("a refused ADD changed the namespace")
	}
	// DEL of something never added is fine; so is a version before 0.3.1.
	l.ok("DEL", "eth0", l.conf(map[string]any{"vrfname": "red"}, nil))
	old := l.conf(map[string]any{"vrfname": "red", "cniVersion": "0.3.0"}, nil)
	if e := l.fails("ADD", "eth0", old); e.Code != cni.ErrIncompatibleCNIVersion {
		t.Errorf("0.3.0: %+v", e)
	}
}
