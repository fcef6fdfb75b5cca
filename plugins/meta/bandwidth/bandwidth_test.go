package bandwidth

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/knit-cni/knit/internal/nstest"
	"github.com/knit-cni/knit/pkg/cni"
	"github.com/vishvananda/netlink"
)

func TestParseConfig(t *testing.T) {
	cases := []struct {
		name string
		json string
		want Limits
		bad  string // substring of the error, "" for success
	}{
		{"none", `{}`, Limits{}, ""},
		{"top level", `{"ingressRate":1000,"ingressBurst":2000}`, Limits{IngressRate: 1000, IngressBurst: 2000}, ""},
		{"runtime", `{"runtimeConfig":{"bandwidth":{"egressRate":800,"egressBurst":900}}}`, Limits{EgressRate: 800, EgressBurst: 900}, ""},
		{"top level wins", `{"egressRate":100,"egressBurst":200,"runtimeConfig":{"bandwidth":{"ingressRate":800,"ingressBurst":900}}}`,
			Limits{EgressRate: 100, EgressBurst: 200}, ""},
		{"rate without burst", `{"ingressRate":1000}`, Limits{}, "ingressRate is set but ingressBurst is not"},
		{"burst without rate", `{"runtimeConfig":{"bandwidth":{"egressBurst":1000}}}`, Limits{}, "egressBurst is set but egressRate is not"},
		{"rate too small", `{"egressRate":7,"egressBurst":1000}`, Limits{}, "below one byte"},
		{"burst too big", `{"egressRate":8000,"egressBurst":34359738368}`, Limits{}, "must fit in 32 bits"},
		{"burst too slow", `{"egressRate":8,"egressBurst":80000000}`, Limits{}, "too long"},
		{"negative", `{"egressRate":-1,"egressBurst":1000}`, Limits{}, "non-negative"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var m map[string]any
			if err := json.Unmarshal([]byte(c.json), &m); err != nil {
				t.Fatal(err)
			}
			m["cniVersion"], m["name"], m["type"] = "1.0.0", "n", "bandwidth"
			b, _ := json.Marshal(m)
			conf, err := parseConfig(b)
			if c.bad != "" {
				if err == nil || !strings.Contains(err.Error(), c.bad) {
					t.Fatalf("error = %v, want one containing %q", err, c.bad)
				}
				if code := cni.Code(err); code != cni.ErrInvalidNetworkConfig && code != cni.ErrDecodingFailure {
					t.Errorf("error code %d, want 6 or 7", code)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if conf.Limits != c.want {
				t.Errorf("limits %+v, want %+v", conf.Limits, c.want)
			}
		})
	}
}

// TestDeriveTBF checks the arithmetic against values worked out by hand
// (tc's formulas with the kernel's 64 ns psched tick).
func TestDeriveTBF(t *testing.T) {
	if netlink.TickInUsec() != 15.625 {
		t.Skipf("psched tick is %v µs here, the worked values assume 15.625", netlink.TickInUsec())
	}
	p, err := deriveTBF(1_000_000, 100_000) // 125000 B/s, 12500 B burst
	if err != nil {
		t.Fatal(err)
	}
	// buffer: 12500 B at 125000 B/s = 100000 µs = 1562500 ticks; limit:
	// 25 ms of 125000 B/s = 3125 B, plus the burst.
	want := tbfParams{Rate: 125_000, Buffer: 1_562_500, Limit: 15_625}
	if p != want {
		t.Errorf("deriveTBF = %+v, want %+v", p, want)
	}
}

// TestIfbName checks the name's shape; TestReferenceOracle checks it is the
// reference plugin's.
func TestIfbName(t *testing.T) {
	n := IfbName("net", "container")
	if len(n) != 15 || !strings.HasPrefix(n, "bwp") {
		t.Errorf("IfbName = %q, want bwp + 12 hex digits", n)
	}
	if IfbName("net", "other") == n || IfbName("net2", "container") == n {
		t.Error("different owners get the same ifb name")
	}
	net, cid, ifname, ok := parseAlias(ownerAlias("net", "c1", "eth0"))
	if !ok || net != "net" || cid != "c1" || ifname != "eth0" {
		t.Errorf("alias round trip gave %q %q %q %v", net, cid, ifname, ok)
	}
}

func TestAddCheckDel(t *testing.T) {
	l := newLab(t, nstest.Plugins(t))
	conf := l.conf(map[string]any{"ingressRate": 8_000_000, "ingressBurst": 800_000, "egressRate": 4_000_000, "egressBurst": 400_000})
	out := l.mustRun("ADD", conf)
	res, err := cni.ParseResult(out, "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	ifb := IfbName("bwnet", l.container)
	if len(res.Interfaces) != 3 || res.Interfaces[2].Name != ifb {
		t.Fatalf("result interfaces %s, want the prevResult's plus %s", out, ifb)
	}
	if qs := l.qdiscs(l.hostVeth); !hasQdisc(qs, "tbf") || !hasQdisc(qs, "ingress") {
		t.Fatalf("host veth qdiscs: %s, want tbf and ingress", describe(l.qdiscs(l.hostVeth)))
	}
	if qs := l.qdiscs(ifb); !hasQdisc(qs, "tbf") {
		t.Fatalf("ifb qdiscs: %s, want tbf", describe(qs))
	}
	ifbLink := nstest.Link(t, l.host, ifb)
	if ifbLink.Attrs().Alias != ownerAlias("bwnet", l.container, "eth0") {
		t.Errorf("ifb alias %q", ifbLink.Attrs().Alias)
	}
	// A repeated ADD changes nothing and adds no second filter.
	l.mustRun("ADD", conf)
	h := l.handle()
	veth, _ := h.LinkByName(l.hostVeth)
	fs, _ := h.FilterList(veth, netlink.MakeHandle(0xffff, 0))
	if len(fs) != 1 {
		t.Errorf("%d ingress filters after a second ADD, want 1", len(fs))
	}

	check := l.conf(map[string]any{"ingressRate": 8_000_000, "ingressBurst": 800_000, "egressRate": 4_000_000, "egressBurst": 400_000})
	l.mustRun("CHECK", check)

	// CHECK re-derives the parameters: a config with another rate fails.
	other := l.conf(map[string]any{"ingressRate": 8_000_000, "ingressBurst": 800_000, "egressRate": 5_000_000, "egressBurst": 400_000})
	if r := l.exec("bandwidth", "CHECK", other); r.ExitCode == 0 || !strings.Contains(string(r.Stdout), "egress shaping") {
		t.Errorf("CHECK with another egress rate: exit %d %s", r.ExitCode, r.Stdout)
	}
	// Damage: someone changes the TBF on the host veth.
	if err := h.QdiscReplace(&netlink.Tbf{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: veth.Attrs().Index, Handle: rootHandle, Parent: netlink.HANDLE_ROOT},
		Rate: 1000, Limit: 10000, Buffer: 100000}); err != nil {
		t.Fatal(err)
	}
	if r := l.exec("bandwidth", "CHECK", check); r.ExitCode == 0 || !strings.Contains(string(r.Stdout), "ingress shaping") {
		t.Errorf("CHECK after damaging the tbf: exit %d %s", r.ExitCode, r.Stdout)
	}
	l.mustRun("ADD", conf) // repairs
	l.mustRun("CHECK", check)
	// Damage: the redirect filter is removed.
	fs, _ = h.FilterList(veth, netlink.MakeHandle(0xffff, 0))
	for _, f := range fs {
		if err := h.FilterDel(f); err != nil {
			t.Fatal(err)
		}
	}
	if r := l.exec("bandwidth", "CHECK", check); r.ExitCode == 0 || !strings.Contains(string(r.Stdout), "redirects") {
		t.Errorf("CHECK without the redirect filter: exit %d %s", r.ExitCode, r.Stdout)
	}
	l.mustRun("ADD", conf)

	l.mustRun("DEL", conf)
	if nstest.LinkExists(t, l.host, ifb) {
		t.Error("ifb still there after DEL")
	}
	if qs := l.qdiscs(l.hostVeth); hasQdisc(qs, "tbf") || hasQdisc(qs, "ingress") {
		t.Errorf("host veth still has %s after DEL", describe(qs))
	}
	l.mustRun("DEL", conf) // idempotent
}

func TestDelWithoutNetns(t *testing.T) {
	l := newLab(t, nstest.Plugins(t))
	conf := l.conf(map[string]any{"egressRate": 4_000_000, "egressBurst": 400_000})
	l.mustRun("ADD", conf)
	ifb := IfbName("bwnet", l.container)
	if !nstest.LinkExists(t, l.host, ifb) {
		t.Fatal("no ifb after ADD")
	}
	env := map[string]string{"CNI_CONTAINERID": l.container, "CNI_NETNS": "/run/netns/knit-gone-" + l.container, "CNI_IFNAME": "eth0"}
	if r := nstest.Exec(t, l.host, l.plugins, "bandwidth", "DEL", env, conf); r.ExitCode != 0 {
		t.Fatalf("DEL with the netns gone: %s", r.Stdout)
	}
	delete(env, "CNI_NETNS")
	if r := nstest.Exec(t, l.host, l.plugins, "bandwidth", "DEL", env, conf); r.ExitCode != 0 {
		t.Fatalf("DEL without CNI_NETNS: %s", r.Stdout)
	}
	if nstest.LinkExists(t, l.host, ifb) {
		t.Error("ifb left after DEL without the container's netns")
	}
}

func TestGC(t *testing.T) {
	l := newLab(t, nstest.Plugins(t))
	l.mustRun("ADD", l.conf(map[string]any{"egressRate": 4_000_000, "egressBurst": 400_000}))
	ifb := IfbName("bwnet", l.container)
	// A stale ifb of this network, one of another network and one without
	// a knit alias.
	h := l.handle()
	mk := func(name, alias string) {
		a := netlink.NewLinkAttrs()
		a.Name = name
		ifb := &netlink.Ifb{LinkAttrs: a}
		if err := h.LinkAdd(ifb); err != nil {
			t.Fatal(err)
		}
		if alias != "" {
			if err := h.LinkSetAlias(ifb, alias); err != nil {
				t.Fatal(err)
			}
		}
	}
	mk("bwpstale", ownerAlias("bwnet", "gone", "eth0"))
	mk("bwpother", ownerAlias("othernet", "gone", "eth0"))
	mk("bwpforeign", "")
	gc := func(valid []cni.GCAttachment) {
		m := map[string]any{"cniVersion": "1.1.0", "name": "bwnet", "type": "bandwidth", "cni.dev/valid-attachments": valid}
		b, _ := json.Marshal(m)
		if r := nstest.Exec(t, l.host, l.plugins, "bandwidth", "GC", nil, b); r.ExitCode != 0 {
			t.Fatalf("GC: %s", r.Stdout)
		}
	}
	gc([]cni.GCAttachment{{ContainerID: l.container, IfName: "eth0"}})
	for name, want := range map[string]bool{ifb: true, "bwpstale": false, "bwpother": true, "bwpforeign": true} {
		if got := nstest.LinkExists(t, l.host, name); got != want {
			t.Errorf("after GC, %s exists = %v, want %v", name, got, want)
		}
	}
	gc(nil)
	if nstest.LinkExists(t, l.host, ifb) {
		t.Error("GC with no valid attachments left the ifb")
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	l := newLab(t, nstest.Plugins(t))
	before := describe(l.qdiscs(l.hostVeth))
	for name, c := range map[string][]byte{
		"half":    l.conf(map[string]any{"egressRate": 4_000_000}),
		"garbage": []byte(`{"cniVersion":"1.0.0","name":"bwnet","type":"bandwidth","egressRate":"fast"}`),
		"no prev": []byte(`{"cniVersion":"1.0.0","name":"bwnet","type":"bandwidth","egressRate":4000000,"egressBurst":400000}`),
	} {
		r := l.exec("bandwidth", "ADD", c)
		if r.ExitCode == 0 {
			t.Errorf("%s: ADD succeeded: %s", name, r.Stdout)
		}
		var e cni.Error
		if json.Unmarshal(r.Stdout, &e) != nil || e.Msg == "" {
			t.Errorf("%s: no CNI error on stdout: %s", name, r.Stdout)
		}
	}
	if after := describe(l.qdiscs(l.hostVeth)); after != before {
		t.Errorf("qdiscs changed by failed ADDs: %s -> %s", before, after)
	}
	if nstest.LinkExists(t, l.host, IfbName("bwnet", l.container)) {
		t.Error("a failed ADD left an ifb")
	}
	// A link already holding the ifb's name but owned by nobody we know.
	h := l.handle()
	a := netlink.NewLinkAttrs()
	a.Name = IfbName("bwnet", l.container)
	if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: a}); err != nil {
		t.Fatal(err)
	}
	r := l.exec("bandwidth", "ADD", l.conf(map[string]any{"egressRate": 4_000_000, "egressBurst": 400_000, "ingressRate": 4_000_000, "ingressBurst": 400_000}))
	if r.ExitCode == 0 || !strings.Contains(string(r.Stdout), "already exists") {
		t.Errorf("ADD over a foreign link of the ifb's name: exit %d %s", r.ExitCode, r.Stdout)
	}
	if after := describe(l.qdiscs(l.hostVeth)); after != before {
		t.Errorf("qdiscs changed by the refused ADD: %s -> %s", before, after)
	}
}

// TestReferenceOracle runs Debian's reference bandwidth plugin and knit's on
// identical labs and compares the ifb name and every TBF parameter.
func TestReferenceOracle(t *testing.T) {
	const ref = "/usr/lib/cni/bandwidth"
	if _, err := os.Stat(ref); err != nil {
		t.Skip("reference plugin not installed:", err)
	}
	refDir := t.TempDir()
	if err := os.Symlink(ref, refDir+"/bandwidth"); err != nil {
		t.Fatal(err)
	}
	extra := map[string]any{"ingressRate": 3_000_000, "ingressBurst": 123_456, "egressRate": 7_000_000, "egressBurst": 654_321}
	type shape struct {
		ifb             string
		ingress, egress netlink.Tbf
	}
	run := func(dir string) shape {
		l := newLab(t, dir)
		l.container = "oracle-container-1"
		conf := l.conf(extra)
		r := l.exec("bandwidth", "ADD", conf)
		if r.ExitCode != 0 {
			t.Fatalf("%s ADD: %s", dir, r.Stdout)
		}
		var s shape
		s.ifb = IfbName("bwnet", l.container)
		for _, q := range l.qdiscs(l.hostVeth) {
			if tb, ok := q.(*netlink.Tbf); ok {
				s.ingress = *tb
			}
		}
		for _, q := range l.qdiscs(s.ifb) {
			if tb, ok := q.(*netlink.Tbf); ok {
				s.egress = *tb
			}
		}
		if r := l.exec("bandwidth", "CHECK", conf); r.ExitCode != 0 {
			t.Errorf("%s CHECK: %s", dir, r.Stdout)
		}
		if r := l.exec("bandwidth", "DEL", conf); r.ExitCode != 0 {
			t.Errorf("%s DEL: %s", dir, r.Stdout)
		}
		return s
	}
	ours, theirs := run(nstest.Plugins(t)), run(refDir)
	for _, p := range []struct {
		what string
		a, b netlink.Tbf
	}{{"ingress", ours.ingress, theirs.ingress}, {"egress", ours.egress, theirs.egress}} {
		if p.a.Rate == 0 || p.a.Rate != p.b.Rate || p.a.Limit != p.b.Limit || p.a.Buffer != p.b.Buffer {
			t.Errorf("%s tbf: knit rate %d limit %d buffer %d; reference rate %d limit %d buffer %d",
				p.what, p.a.Rate, p.a.Limit, p.a.Buffer, p.b.Rate, p.b.Limit, p.b.Buffer)
		}
	}
}
