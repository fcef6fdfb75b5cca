package tap_test

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/knit-cni/knit/internal/kfeature"
	"github.com/knit-cni/knit/internal/link"
	"github.com/knit-cni/knit/internal/netns"
	"github.com/knit-cni/knit/internal/nstest"
	"github.com/knit-cni/knit/pkg/cni"
	"github.com/vishvananda/netlink"
)

func TestMain(m *testing.M) { nstest.Main(m) }

type lab struct {
	t                *testing.T
	host, cont       string
	plugins, ipamDir string
}

func newLab(t *testing.T) *lab {
	t.Helper()
	nstest.RequireRoot(t)
	kfeature.Require(t, kfeature.Tun)
	host, cont := nstest.HostAndContainer(t, "tap")
	return &lab{t: t, host: host, cont: cont, plugins: nstest.Plugins(t), ipamDir: t.TempDir()}
}

func (l *lab) conf(keys map[string]any) []byte {
	m := map[string]any{"cniVersion": "1.1.0", "name": "tapnet", "type": "tap"}
	for k, v := range keys {
		m[k] = v
	}
	if ipam, ok := m["ipam"].(map[string]any); ok {
		ipam["dataDir"] = l.ipamDir
	}
	out, _ := json.Marshal(m)
	return out
}

func (l *lab) exec(cmd, args string, stdin []byte) nstest.PluginRun {
	l.t.Helper()
	env := map[string]string{"CNI_CONTAINERID": "c1", "CNI_NETNS": l.cont, "CNI_IFNAME": "tap0"}
	if args != "" {
		env["CNI_ARGS"] = args
	}
	return nstest.Exec(l.t, l.host, l.plugins, "tap", cmd, env, stdin)
}

func (l *lab) add(stdin []byte) *cni.Result {
	l.t.Helper()
	r := l.exec("ADD", "", stdin)
	if r.ExitCode != 0 {
		l.t.Fatalf("ADD failed (exit %d): %s", r.ExitCode, r.Stdout)
	}
	res, err := cni.ParseResult(r.Stdout, "1.1.0")
	if err != nil {
		l.t.Fatalf("unparsable result: %v\n%s", err, r.Stdout)
	}
	return res
}

func (l *lab) ok(cmd string, stdin []byte) {
	l.t.Helper()
	if r := l.exec(cmd, "", stdin); r.ExitCode != 0 {
		l.t.Fatalf("%s failed (exit %d): %s", cmd, r.ExitCode, r.Stdout)
	}
}

func (l *lab) fails(cmd string, stdin []byte) *cni.Error {
	l.t.Helper()
	r := l.exec(cmd, "", stdin)
	if r.ExitCode == 0 {
		l.t.Fatalf("%s succeeded; want failure", cmd)
	}
	var e cni.Error
	if err := json.Unmarshal(r.Stdout, &e); err != nil {
		l.t.Fatalf("%s: not a CNI error: %s", cmd, r.Stdout)
	}
	return &e
}

func withPrev(t *testing.T, stdin []byte, prev *cni.Result) []byte {
	t.Helper()
	var m map[string]any
	_ = json.Unmarshal(stdin, &m)
	enc, err := prev.Encode("1.1.0")
	if err != nil {
		t.Fatal(err)
	}
	m["prevResult"] = json.RawMessage(enc)
	out, _ := json.Marshal(m)
	return out
}

// describe reads the tap's kernel settings in the container.
func (l *lab) describe() (netlink.Link, link.TapInfo) {
	l.t.Helper()
	ns, err := link.Open(l.cont)
	if err != nil {
		l.t.Fatal(err)
	}
	defer ns.Close()
	tl, err := ns.Handle.LinkByName("tap0")
	if err != nil {
		l.t.Fatalf("tap0 not in the container: %v", err)
	}
	info, err := link.DescribeTap(ns, tl)
	if err != nil {
		l.t.Fatal(err)
	}
	return tl, info
}

// TestTapFullConfig: multi-queue, owner, group, MTU, MAC and IPAM, then
// CHECK, DEL, a repeated DEL and a DEL after the namespace is gone.
func TestTapFullConfig(t *testing.T) {
	l := newLab(t)
	conf := l.conf(map[string]any{"multiQueue": true, "owner": 1000, "group": 1001, "mtu": 1400, "mac": "0a:58:0a:01:02:03",
		"ipam": map[string]any{"type": "host-local", "subnet": "10.95.0.0/24"}})
	res := l.add(conf)
	if len(res.Interfaces) != 1 || res.Interfaces[0].Name != "tap0" || res.Interfaces[0].Mac != "0a:58:0a:01:02:03" || res.Interfaces[0].Sandbox != l.cont {
		t.Fatalf("interfaces %+v", res.Interfaces[0])
	}
	if len(res.IPs) != 1 || res.IPs[0].Address.String() != "10.95.0.2/24" {
		t.Fatalf("IPs %+v", res.IPs)
	}
	tl, info := l.describe()
	if !info.Tap || !info.MultiQueue || !info.VnetHdr || !info.Persistent {
		t.Errorf("tap flags %+v: want tap, multi-queue, vnet_hdr, persistent", info)
	}
	if info.Owner == nil || *info.Owner != 1000 || info.Group == nil || *info.Group != 1001 {
		t.Errorf("owner/group %v/%v, want 1000/1001", info.Owner, info.Group)
	}
	if tl.Attrs().MTU != 1400 || tl.Attrs().HardwareAddr.String() != "0a:58:0a:01:02:03" {
		t.Errorf("MTU %d MAC %s", tl.Attrs().MTU, tl.Attrs().HardwareAddr)
	}
	if !nstest.LinkUp(t, l.cont, "tap0") || !slices.Contains(nstest.Addrs(t, l.cont, "tap0"), "10.95.0.2/24") {
		t.Errorf("tap0 up=%v addrs=%v", nstest.LinkUp(t, l.cont, "tap0"), nstest.Addrs(t, l.cont, "tap0"))
	}
	l.ok("CHECK", withPrev(t, conf, res))
	// CHECK sees a changed MTU.
	must(t, nstest.Handle(t, l.cont).LinkSetMTU(tl, 1300))
	if e := l.fails("CHECK", withPrev(t, conf, res)); !strings.Contains(e.Msg, "MTU") {
		t.Errorf("CHECK after MTU change: %+v", e)
	}
	l.ok("DEL", conf)
	if nstest.LinkExists(t, l.cont, "tap0") {
		t.Error("tap0 survived DEL")
	}
	l.ok("DEL", conf)
	// A second attachment releases its address on DEL after the namespace is gone.
	l.add(conf)
	if err := netns.DeletePath(l.cont); err != nil {
		t.Fatal(err)
	}
	l.ok("DEL", conf)
	if left, _ := filepath.Glob(filepath.Join(l.ipamDir, "tapnet", "10.*")); len(left) != 0 {
		t.Errorf("IPAM reservations left after DEL: %v", left)
	}
}

// TestTapNoOwner: without owner and group the device has none (the
// reference's netlink path would make it root's), and single-queue.
func TestTapNoOwner(t *testing.T) {
	l := newLab(t)
	conf := l.conf(nil)
	res := l.add(conf)
	_, info := l.describe()
	if info.Owner != nil || info.Group != nil {
		t.Errorf("owner/group %v/%v, want none", info.Owner, info.Group)
	}
	if info.MultiQueue || !info.VnetHdr || !info.Tap {
		t.Errorf("flags %+v", info)
	}
	if !nstest.LinkUp(t, l.cont, "tap0") || len(res.IPs) != 0 {
		t.Errorf("L2 tap: up=%v IPs=%v", nstest.LinkUp(t, l.cont, "tap0"), res.IPs)
	}
	l.ok("CHECK", withPrev(t, conf, res))
	// CHECK with an owner in the config notices the device has none.
	owned := l.conf(map[string]any{"owner": 7})
	if e := l.fails("CHECK", withPrev(t, owned, res)); !strings.Contains(e.Msg, "owner") {
		t.Errorf("CHECK owner mismatch: %+v", e)
	}
	l.ok("DEL", conf)
}

// TestTapBridge enslaves the tap to a bridge inside the container.
func TestTapBridge(t *testing.T) {
	l := newLab(t)
	ch := nstest.Handle(t, l.cont)
	attrs := netlink.NewLinkAttrs()
	attrs.Name = "br0"
	must(t, ch.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}))
	conf := l.conf(map[string]any{"bridge": "br0"})
	res := l.add(conf)
	br := nstest.Link(t, l.cont, "br0")
	tl := nstest.Link(t, l.cont, "tap0")
	if tl.Attrs().MasterIndex != br.Attrs().Index {
		t.Fatalf("tap0 master %d, want br0 (%d)", tl.Attrs().MasterIndex, br.Attrs().Index)
	}
	l.ok("CHECK", withPrev(t, conf, res))
	must(t, ch.LinkSetNoMaster(tl))
	if e := l.fails("CHECK", withPrev(t, conf, res)); !strings.Contains(e.Msg, "not a port") {
		t.Errorf("CHECK after release: %+v", e)
	}
	l.ok("DEL", conf)
	if !nstest.LinkExists(t, l.cont, "br0") {
		t.Error("DEL removed the bridge it does not own")
	}
}

// TestTapBadInput: bad configs and clashes fail with the right code and
// leave nothing behind.
func TestTapBadInput(t *testing.T) {
	l := newLab(t)
	cases := []struct {
		name string
		keys map[string]any
		code uint
		want string
	}{
		{"bad mac", map[string]any{"mac": "nope"}, cni.ErrInvalidNetworkConfig, "MAC"},
		{"multicast mac", map[string]any{"mac": "01:00:5e:00:00:01"}, cni.ErrInvalidNetworkConfig, "multicast"},
		{"negative mtu", map[string]any{"mtu": -1}, cni.ErrInvalidNetworkConfig, "mtu"},
		{"missing bridge", map[string]any{"bridge": "nobr"}, cni.ErrInvalidNetworkConfig, "nobr"},
		{"bad owner", map[string]any{"owner": "root"}, cni.ErrDecodingFailure, "owner"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := l.fails("ADD", l.conf(c.keys))
			if e.Code != c.code || !strings.Contains(e.Msg+e.Details, c.want) {
				t.Errorf("got %+v, want code %d mentioning %q", e, c.code, c.want)
			}
			if nstest.LinkExists(t, l.cont, "tap0") {
				t.Fatal("a failed ADD left tap0 behind")
			}
		})
	}
	// An interface of that name already exists: refused, left alone.
	ch := nstest.Handle(t, l.cont)
	attrs := netlink.NewLinkAttrs()
	attrs.Name = "tap0"
	must(t, ch.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}))
	if e := l.fails("ADD", l.conf(nil)); e.Code != cni.ErrInvalidEnvironmentVariables {
		t.Errorf("name clash: %+v", e)
	}
	if _, ok := nstest.Link(t, l.cont, "tap0").(*netlink.Bridge); !ok {
		t.Error("the existing tap0 was replaced")
	}
	// CNI_ARGS MAC= is honoured.
	must(t, ch.LinkDel(nstest.Link(t, l.cont, "tap0")))
	if r := l.exec("ADD", "MAC=0a:00:00:00:00:42", l.conf(nil)); r.ExitCode != 0 || !strings.Contains(string(r.Stdout), "0a:00:00:00:00:42") {
		t.Errorf("ADD with CNI_ARGS MAC: %s", r.Stdout)
	}
	l.ok("DEL", l.conf(nil))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
