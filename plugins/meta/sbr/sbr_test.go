package sbr

import (
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/knit-cni/knit/internal/link"
	"github.com/knit-cni/knit/internal/netns"
	"github.com/knit-cni/knit/internal/nstest"
	"github.com/knit-cni/knit/pkg/cni"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { nstest.Main(m) }

func TestParseConfig(t *testing.T) {
	for _, c := range []struct{ json, bad string }{
		{`{}`, ""},
		{`{"table":500,"gateways":["10.0.0.1","fd00::1"],"addSourceHints":true}`, ""},
		{`{"table":254}`, "invalid table"},
		{`{"table":0}`, "invalid table"},
		{`{"gateways":["10.0.0.1","10.0.0.2"]}`, "two addresses of one family"},
		{`{"gateways":["nope"]}`, "invalid gateway"},
		{`{"table":"x"}`, "failed to parse"},
	} {
		_, err := parseConfig([]byte(c.json))
		if (c.bad == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.bad)) {
			t.Errorf("%s: error %v, want %q", c.json, err, c.bad)
		}
	}
}

// lab is a host namespace and a container namespace joined by several
// veths: the container's ethN gets 10.80+N.0.2/24, the host end .1, and the
// host has 192.0.2.1 on lo as a far destination.
type lab struct {
	t         *testing.T
	host      string
	cont      string
	plugins   string
	container string
	hostEnds  map[string]string // container ifname -> host veth name
	results   map[string]*cni.Result
}

func newLab(t *testing.T, ifnames ...string) *lab {
	t.Helper()
	nstest.RequireRoot(t)
	l := &lab{t: t, plugins: nstest.Plugins(t), container: nstest.UniqueName("sb"),
		hostEnds: map[string]string{}, results: map[string]*cni.Result{}}
	l.host, l.cont = nstest.HostAndContainer(t, "sb")
	host, err := link.Open(l.host)
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	cont, err := link.Open(l.cont)
	if err != nil {
		t.Fatal(err)
	}
	defer cont.Close()
	for _, ns := range []*link.Namespace{host, cont} {
		lo, _ := ns.Handle.LinkByName("lo")
		ns.Handle.LinkSetUp(lo)
	}
	must(t, host.Handle.AddrAdd(mustLink(t, host, "lo"), &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(192, 0, 2, 1), Mask: net.CIDRMask(32, 32)}}))
	for i, name := range ifnames {
		pair, err := link.CreateVeth(host, cont, link.Veth{ContainerName: name, HostUp: true})
		if err != nil {
			t.Fatal(err)
		}
		hostIP, contIP := net.IPv4(10, byte(80+i), 0, 1).To4(), net.IPv4(10, byte(80+i), 0, 2).To4()
		mask := net.CIDRMask(24, 32)
		must(t, host.Handle.AddrAdd(pair.Host, &netlink.Addr{IPNet: &net.IPNet{IP: hostIP, Mask: mask}}))
		must(t, cont.Handle.AddrAdd(pair.Container, &netlink.Addr{IPNet: &net.IPNet{IP: contIP, Mask: mask}}))
		must(t, cont.Handle.LinkSetUp(pair.Container))
		if i == 0 { // the first interface carries the main default route
			must(t, cont.Handle.RouteAdd(&netlink.Route{Dst: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, Gw: hostIP, LinkIndex: pair.Container.Attrs().Index}))
		}
		l.hostEnds[name] = pair.Host.Attrs().Name
		l.results[name] = &cni.Result{CNIVersion: "1.0.0",
			Interfaces: []*cni.Interface{{Name: pair.Host.Attrs().Name}, {Name: name, Sandbox: l.cont}},
			IPs:        []*cni.IPConfig{{Interface: cni.Int(1), Address: net.IPNet{IP: contIP, Mask: mask}, Gateway: hostIP}}}
	}
	// Replies may come back another way than the request went; a new
	// namespace has rp_filter off, so that works.
	return l
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func mustLink(t *testing.T, ns *link.Namespace, name string) netlink.Link {
	t.Helper()
	l, err := ns.Handle.LinkByName(name)
	must(t, err)
	return l
}

func (l *lab) conf(ifname string, extra map[string]any) []byte {
	prev, _ := l.results[ifname].Encode("1.0.0")
	m := map[string]any{"cniVersion": "1.0.0", "name": "sbrnet", "type": "sbr", "prevResult": json.RawMessage(prev)}
	for k, v := range extra {
		m[k] = v
	}
	b, _ := json.Marshal(m)
	return b
}

func (l *lab) exec(cmd, ifname string, stdin []byte) nstest.PluginRun {
	l.t.Helper()
	env := map[string]string{"CNI_CONTAINERID": l.container, "CNI_NETNS": l.cont, "CNI_IFNAME": ifname}
	return nstest.Exec(l.t, l.host, l.plugins, "sbr", cmd, env, stdin)
}

func (l *lab) mustRun(cmd, ifname string, stdin []byte) {
	l.t.Helper()
	if r := l.exec(cmd, ifname, stdin); r.ExitCode != 0 {
		l.t.Fatalf("%s %s: %s", cmd, ifname, r.Stdout)
	}
}

// ourRules returns the container's rules made by sbr, as "src->table".
func (l *lab) ourRules() map[string]int {
	rules, err := nstest.Handle(l.t, l.cont).RuleList(netlink.FAMILY_ALL)
	must(l.t, err)
	out := map[string]int{}
	for _, r := range rules {
		if r.Protocol == RuleProtocol && r.Src != nil {
			out[r.Src.String()] = r.Table
		}
	}
	return out
}

// routesIn lists the container's routes in table as "dst via gw dev".
func (l *lab) routesIn(table int) []string {
	h := nstest.Handle(l.t, l.cont)
	rs, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: table}, netlink.RT_FILTER_TABLE)
	must(l.t, err)
	var out []string
	for _, r := range rs {
		lk, _ := h.LinkByIndex(r.LinkIndex)
		dst := "default"
		if r.Dst != nil && !isDefault(r.Dst) {
			dst = r.Dst.String()
		}
		s := dst
		if r.Gw != nil {
			s += " via " + r.Gw.String()
		}
		if lk != nil {
			s += " dev " + lk.Attrs().Name
		}
		out = append(out, s)
	}
	return out
}

// sendFrom connects from src (in the container) to 192.0.2.1:port on the
// host and returns how many packets each host veth received meanwhile.
func (l *lab) sendFrom(src net.IP) map[string]uint64 {
	l.t.Helper()
	var ln net.Listener
	must(l.t, netns.Do(l.host, func() (err error) { ln, err = net.Listen("tcp", "192.0.2.1:0"); return err }))
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("hi\n"))
			c.Close()
		}
	}()
	rx := func() map[string]uint64 {
		out := map[string]uint64{}
		for ifname, h := range l.hostEnds {
			out[ifname] = nstest.Link(l.t, l.host, h).Attrs().Statistics.RxPackets
		}
		return out
	}
	before := rx()
	for i := 0; i < 5; i++ {
		var c net.Conn
		err := netns.Do(l.cont, func() (err error) {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: 3 * time.Second}
			c, err = d.Dial("tcp", ln.Addr().String())
			return err
		})
		if err != nil {
			l.t.Fatalf("connecting from %s: %v", src, err)
		}
		buf := make([]byte, 3)
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		if _, err := c.Read(buf); err != nil {
			l.t.Fatalf("reading from %s: %v", src, err)
		}
		c.Close()
	}
	after := rx()
	for k := range after {
		after[k] -= before[k]
	}
	return after
}

// carried reports whether the five connections' packets (about 25) went
// over via and not over other; a few background packets (IPv6 neighbour
// discovery on a new link) may show up anywhere.
func carried(rx map[string]uint64, via, other string) bool {
	return rx[via] >= 15 && rx[other]*3 < rx[via]
}

func TestAddTrafficCheckDel(t *testing.T) {
	l := newLab(t, "eth0", "net1")
	src := net.IPv4(10, 81, 0, 2)
	// Without sbr, traffic from net1's address follows main's default route
	// out of eth0.
	if got := l.sendFrom(src); !carried(got, "eth0", "net1") {
		t.Fatalf("before ADD, packets from %s arrived %v; want them on eth0's peer", src, got)
	}
	conf := l.conf("net1", nil)
	l.mustRun("ADD", "net1", conf)
	if got := l.ourRules(); len(got) != 1 || got["10.81.0.2/32"] != FirstTable {
		t.Fatalf("rules after ADD: %v, want 10.81.0.2/32 -> %d", got, FirstTable)
	}
	tbl := strings.Join(l.routesIn(FirstTable), "; ")
	if !strings.Contains(tbl, "default via 10.81.0.1 dev net1") || !strings.Contains(tbl, "10.81.0.0/24 dev net1") {
		t.Errorf("table %d: %s", FirstTable, tbl)
	}
	if main := strings.Join(l.routesIn(unix.RT_TABLE_MAIN), "; "); strings.Contains(main, "net1") {
		t.Errorf("net1's routes still in main: %s", main)
	}
	if got := l.sendFrom(src); !carried(got, "net1", "eth0") {
		t.Errorf("after ADD, packets from %s arrived %v; want them on net1's peer", src, got)
	}
	if got := l.sendFrom(net.IPv4(10, 80, 0, 2)); !carried(got, "eth0", "net1") {
		t.Errorf("eth0's own traffic moved: %v", got)
	}
	l.mustRun("ADD", "net1", conf) // repeated: same table, no second rule
	if got := l.ourRules(); len(got) != 1 || got["10.81.0.2/32"] != FirstTable {
		t.Errorf("rules after a second ADD: %v", got)
	}
	l.mustRun("CHECK", "net1", conf)
	h := nstest.Handle(t, l.cont)
	must(t, h.RouteDel(&netlink.Route{Dst: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, Gw: net.IPv4(10, 81, 0, 1), Table: FirstTable,
		LinkIndex: nstest.Link(t, l.cont, "net1").Attrs().Index}))
	if r := l.exec("CHECK", "net1", conf); r.ExitCode == 0 || !strings.Contains(string(r.Stdout), "no default route") {
		t.Errorf("CHECK without the table's default route: %s", r.Stdout)
	}
	l.mustRun("DEL", "net1", conf)
	if got := l.ourRules(); len(got) != 0 {
		t.Errorf("rules left after DEL: %v", got)
	}
	if got := l.routesIn(FirstTable); len(got) != 0 {
		t.Errorf("table %d left with %v", FirstTable, got)
	}
	if r := l.exec("CHECK", "net1", conf); r.ExitCode == 0 {
		t.Error("CHECK passed after DEL")
	}
	l.mustRun("DEL", "net1", conf)
}

// TestTablesDoNotCollide: tables in use by rules or routes are skipped, and
// concurrent ADDs for several interfaces of one container get distinct
// tables (the namespace lock serialises them).
func TestTablesDoNotCollide(t *testing.T) {
	names := []string{"eth0", "net1", "net2", "net3", "net4"}
	l := newLab(t, names...)
	h := nstest.Handle(t, l.cont)
	r := netlink.NewRule()
	r.Family, r.Table, r.Mark = netlink.FAMILY_V4, 100, 7
	must(t, h.RuleAdd(r))
	must(t, h.RouteAdd(&netlink.Route{Dst: &net.IPNet{IP: net.IPv4(198, 51, 100, 0).To4(), Mask: net.CIDRMask(24, 32)},
		LinkIndex: nstest.Link(t, l.cont, "eth0").Attrs().Index, Table: 101}))
	var wg sync.WaitGroup
	errs := make(chan string, len(names))
	for _, n := range names[1:] {
		wg.Add(1)
		go func(n string) {
			defer wg.Done()
			if r := l.exec("ADD", n, l.conf(n, nil)); r.ExitCode != 0 {
				errs <- fmt.Sprintf("%s: %s", n, r.Stdout)
			}
		}(n)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	got := l.ourRules()
	seen := map[int]bool{}
	for src, table := range got {
		if table < 102 || seen[table] {
			t.Errorf("%s -> table %d: collides with a used table (%v)", src, table, got)
		}
		seen[table] = true
	}
	if len(got) != 4 {
		t.Errorf("rules: %v, want one per interface", got)
	}
}

func TestExplicitTableAndHints(t *testing.T) {
	l := newLab(t, "eth0", "net1")
	conf := l.conf("net1", map[string]any{"table": 5000})
	l.mustRun("ADD", "net1", conf)
	if got := l.ourRules(); got["10.81.0.2/32"] != 5000 {
		t.Errorf("rules: %v", got)
	}
	if main := strings.Join(l.routesIn(unix.RT_TABLE_MAIN), "; "); !strings.Contains(main, "10.81.0.0/24 dev net1") {
		t.Errorf("explicit table moved routes out of main: %s", main)
	}
	l.mustRun("CHECK", "net1", conf)
	l.mustRun("DEL", "net1", conf)
	if got := l.ourRules(); len(got) != 0 {
		t.Errorf("rules left: %v", got)
	}

	hints := l.conf("net1", map[string]any{"addSourceHints": true, "gateways": []string{"10.81.0.1"}})
	l.mustRun("ADD", "net1", hints)
	if main := strings.Join(l.routesIn(unix.RT_TABLE_MAIN), "; "); !strings.Contains(main, "10.81.0.0/24 dev net1") {
		t.Errorf("addSourceHints: subnet route left main: %s", main)
	}
	if tbl := strings.Join(l.routesIn(FirstTable), "; "); !strings.Contains(tbl, "10.81.0.0/24 dev net1") || !strings.Contains(tbl, "default via 10.81.0.1") {
		t.Errorf("addSourceHints table: %s", tbl)
	}
	l.mustRun("DEL", "net1", hints)
}

// TestDelAfterLinkOrNetnsGone: the rules go even when the interface is
// already deleted (addresses from prevResult), and DEL without the
// namespace succeeds.
func TestDelAfterLinkOrNetnsGone(t *testing.T) {
	l := newLab(t, "eth0", "net1")
	conf := l.conf("net1", nil)
	l.mustRun("ADD", "net1", conf)
	h := nstest.Handle(t, l.cont)
	must(t, h.LinkDel(nstest.Link(t, l.cont, "net1")))
	l.mustRun("DEL", "net1", conf)
	if got := l.ourRules(); len(got) != 0 {
		t.Errorf("rules left after DEL of a deleted interface: %v", got)
	}
	env := map[string]string{"CNI_CONTAINERID": l.container, "CNI_NETNS": "/run/netns/knit-gone-" + l.container, "CNI_IFNAME": "net1"}
	if r := nstest.Exec(t, l.host, l.plugins, "sbr", "DEL", env, conf); r.ExitCode != 0 {
		t.Errorf("DEL with the namespace gone: %s", r.Stdout)
	}
	if r := l.exec("ADD", "net1", []byte(`{"cniVersion":"1.0.0","name":"sbrnet","type":"sbr"}`)); r.ExitCode == 0 {
		t.Error("ADD without prevResult succeeded")
	}
}
