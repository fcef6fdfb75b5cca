package tuning

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/knit-cni/knit/internal/link"
	"github.com/knit-cni/knit/internal/netns"
	"github.com/knit-cni/knit/internal/nstest"
	"github.com/knit-cni/knit/internal/sysctl"
	"github.com/knit-cni/knit/pkg/cni"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { nstest.Main(m) }

func TestResolveKey(t *testing.T) {
	for _, c := range []struct{ key, want, bad string }{
		{"net.ipv4.conf.IFNAME.arp_filter", "net/ipv4/conf/eth0.1/arp_filter", ""},
		{"net/ipv6/conf/IFNAME/accept_ra", "net/ipv6/conf/eth0.1/accept_ra", ""},
		{"net.core.somaxconn", "net/core/somaxconn", ""},
		{"kernel.hostname", "", "not a network key"},
		{"net/../kernel/hostname", "", ".."},
		{"net..core", "", "empty"},
		{"/net/core/somaxconn", "", "empty"},
	} {
		got, err := ResolveKey(c.key, "eth0.1")
		if c.bad != "" {
			if err == nil || !strings.Contains(err.Error(), c.bad) {
				t.Errorf("ResolveKey(%q) = %q, %v; want an error about %q", c.key, got, err, c.bad)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ResolveKey(%q) = %q, %v; want %q", c.key, got, err, c.want)
		}
	}
}

func TestParseConfig(t *testing.T) {
	base := `"cniVersion":"1.0.0","name":"tn","type":"tuning"`
	t.Run("duplicate keys", func(t *testing.T) {
		_, err := parseConfig([]byte(`{`+base+`,"sysctl":{"net.core.somaxconn":"1","net.core.somaxconn":"2"}}`), "", "eth0")
		if err == nil || !strings.Contains(err.Error(), "duplicated") {
			t.Errorf("got %v", err)
		}
		_, err = parseConfig([]byte(`{`+base+`,"sysctl":{"net.core.somaxconn":"1","net/core/somaxconn":"2"}}`), "", "eth0")
		if err == nil || !strings.Contains(err.Error(), "duplicated") {
			t.Errorf("dotted and slashed forms of one key: got %v", err)
		}
	})
	t.Run("outside net", func(t *testing.T) {
		_, err := parseConfig([]byte(`{`+base+`,"sysctl":{"kernel.shmmax":"1"}}`), "", "eth0")
		if cni.Code(err) != cni.ErrInvalidNetworkConfig {
			t.Errorf("got %v", err)
		}
	})
	t.Run("mac precedence", func(t *testing.T) {
		c, err := parseConfig([]byte(`{`+base+`,"mac":"02:00:00:00:00:01"}`), "IgnoreUnknown=1;MAC=02:00:00:00:00:02", "eth0")
		if err != nil || c.Mac != "02:00:00:00:00:02" {
			t.Errorf("CNI_ARGS MAC over config: %v %v", c, err)
		}
		c, err = parseConfig([]byte(`{`+base+`,"runtimeConfig":{"mac":"02:00:00:00:00:03"}}`), "MAC=02:00:00:00:00:02", "eth0")
		if err != nil || c.Mac != "02:00:00:00:00:03" {
			t.Errorf("runtimeConfig over CNI_ARGS: %v %v", c, err)
		}
		c, err = parseConfig([]byte(`{`+base+`,"runtimeConfig":{"mac":"02:00:00:00:00:03"},"args":{"cni":{"mac":"02:00:00:00:00:04","mtu":1300}}}`), "", "eth0")
		if err != nil || c.Mac != "02:00:00:00:00:04" || c.Mtu != 1300 {
			t.Errorf("args.cni over runtimeConfig: %v %v", c, err)
		}
		if _, err := parseConfig([]byte(`{`+base+`,"mac":"nope"}`), "", "eth0"); cni.Code(err) != cni.ErrInvalidNetworkConfig {
			t.Errorf("bad MAC: %v", err)
		}
	})
	t.Run("allowlist", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "allowlist.conf")
		os.WriteFile(file, []byte("^net\\.ipv4\\.conf\\.IFNAME\\.[a-z_]*$\n\n^net\\.core\\.somaxconn$\n"), 0o644)
		old := AllowlistPath
		AllowlistPath = file
		defer func() { AllowlistPath = old }()
		if _, err := parseConfig([]byte(`{`+base+`,"sysctl":{"net.ipv4.conf.IFNAME.arp_filter":"1","net.core.somaxconn":"9"}}`), "", "eth0"); err != nil {
			t.Errorf("allowed keys refused: %v", err)
		}
		_, err := parseConfig([]byte(`{`+base+`,"sysctl":{"net.ipv4.ip_forward":"1"}}`), "", "eth0")
		if err == nil || !strings.Contains(err.Error(), "not allowed") {
			t.Errorf("key outside the allow-list: %v", err)
		}
		os.WriteFile(file, []byte("(\n"), 0o644)
		if _, err := parseConfig([]byte(`{`+base+`,"sysctl":{"net.core.somaxconn":"9"}}`), "", "eth0"); err == nil {
			t.Error("a broken allow-list was accepted")
		}
	})
}

// lab is a host and a container namespace joined by a veth (eth0 inside).
type lab struct {
	t         *testing.T
	host      string
	cont      string
	plugins   string
	dataDir   string
	container string
	prev      *cni.Result
}

func newLab(t *testing.T, plugins string) *lab {
	t.Helper()
	nstest.RequireRoot(t)
	l := &lab{t: t, plugins: plugins, dataDir: t.TempDir(), container: nstest.UniqueName("tu")}
	l.host, l.cont = nstest.HostAndContainer(t, "tu")
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
	pair, err := link.CreateVeth(host, cont, link.Veth{ContainerName: "eth0", HostUp: true})
	if err != nil {
		t.Fatal(err)
	}
	l.prev = &cni.Result{CNIVersion: "1.0.0", Interfaces: []*cni.Interface{
		{Name: pair.Host.Attrs().Name, Mac: pair.Host.Attrs().HardwareAddr.String()},
		{Name: "eth0", Mac: pair.Container.Attrs().HardwareAddr.String(), Sandbox: l.cont},
	}}
	return l
}

func (l *lab) conf(extra map[string]any) []byte {
	l.t.Helper()
	prev, _ := l.prev.Encode("1.0.0")
	m := map[string]any{"cniVersion": "1.0.0", "name": "tunet", "type": "tuning", "dataDir": l.dataDir, "prevResult": json.RawMessage(prev)}
	for k, v := range extra {
		m[k] = v
	}
	b, _ := json.Marshal(m)
	return b
}

func (l *lab) exec(cmd string, stdin []byte) nstest.PluginRun {
	l.t.Helper()
	env := map[string]string{"CNI_CONTAINERID": l.container, "CNI_NETNS": l.cont, "CNI_IFNAME": "eth0"}
	return nstest.Exec(l.t, l.host, l.plugins, "tuning", cmd, env, stdin)
}

func (l *lab) mustRun(cmd string, stdin []byte) []byte {
	l.t.Helper()
	r := l.exec(cmd, stdin)
	if r.ExitCode != 0 {
		l.t.Fatalf("%s failed: %s", cmd, r.Stdout)
	}
	return r.Stdout
}

// snapshot is everything tuning may change, as seen in the container.
type snapshot struct {
	MAC                  string
	MTU, TxQLen          int
	Promisc, Allmulti    bool
	ArpFilter, Somaxconn string
}

func (l *lab) snapshot() snapshot {
	l.t.Helper()
	lk := nstest.Link(l.t, l.cont, "eth0")
	a := lk.Attrs()
	s := snapshot{MAC: a.HardwareAddr.String(), MTU: a.MTU, TxQLen: a.TxQLen, Promisc: a.Promisc != 0, Allmulti: a.RawFlags&unix.IFF_ALLMULTI != 0}
	if err := netns.Do(l.cont, func() (err error) {
		if s.ArpFilter, err = sysctl.Get("net/ipv4/conf/eth0/arp_filter"); err != nil {
			return err
		}
		s.Somaxconn, err = sysctl.Get("net/core/somaxconn")
		return err
	}); err != nil {
		l.t.Fatal(err)
	}
	return s
}

var tuned = map[string]any{
	"sysctl":   map[string]string{"net.ipv4.conf.IFNAME.arp_filter": "1", "net.core.somaxconn": "777"},
	"mac":      "02:4b:00:00:00:07",
	"mtu":      1280,
	"promisc":  true,
	"allmulti": true,
	"txQLen":   321,
}

func TestAddCheckDelRestores(t *testing.T) {
	l := newLab(t, nstest.Plugins(t))
	before := l.snapshot()
	conf := l.conf(tuned)
	out := l.mustRun("ADD", conf)
	want := snapshot{MAC: "02:4b:00:00:00:07", MTU: 1280, TxQLen: 321, Promisc: true, Allmulti: true, ArpFilter: "1", Somaxconn: "777"}
	if got := l.snapshot(); got != want {
		t.Fatalf("after ADD: %+v, want %+v", got, want)
	}
	res, err := cni.ParseResult(out, "1.0.0")
	if err != nil || res.Interfaces[1].Mac != "02:4b:00:00:00:07" || res.Interfaces[0].Mac != l.prev.Interfaces[0].Mac {
		t.Errorf("result does not carry the new MAC on eth0 only: %s", out)
	}
	if _, err := os.Stat(stateFile(l.dataDir, l.container, "eth0")); err != nil {
		t.Errorf("no saved state: %v", err)
	}
	l.mustRun("CHECK", conf)
	// A repeated ADD keeps the first ADD's originals.
	l.mustRun("ADD", conf)

	// Damage is noticed: a sysctl and then the MTU.
	netns.Do(l.cont, func() error { _, err := sysctl.Set("net/ipv4/conf/eth0/arp_filter", "0"); return err })
	if r := l.exec("CHECK", conf); r.ExitCode == 0 || !strings.Contains(string(r.Stdout), "arp_filter") {
		t.Errorf("CHECK after a sysctl changed: %s", r.Stdout)
	}
	l.mustRun("ADD", conf)
	h := nstest.Handle(t, l.cont)
	h.LinkSetMTU(nstest.Link(t, l.cont, "eth0"), 1500)
	if r := l.exec("CHECK", conf); r.ExitCode == 0 || !strings.Contains(string(r.Stdout), "MTU") {
		t.Errorf("CHECK after the MTU changed: %s", r.Stdout)
	}

	l.mustRun("DEL", conf)
	if got := l.snapshot(); got != before {
		t.Errorf("after DEL: %+v, want the originals %+v", got, before)
	}
	if _, err := os.Stat(stateFile(l.dataDir, l.container, "eth0")); !os.IsNotExist(err) {
		t.Errorf("saved state left after DEL: %v", err)
	}
	l.mustRun("DEL", conf)
}

func TestBadInputChangesNothing(t *testing.T) {
	l := newLab(t, nstest.Plugins(t))
	before := l.snapshot()
	for name, extra := range map[string]map[string]any{
		"missing sysctl": {"mtu": 1300, "sysctl": map[string]string{"net.core.somaxconn": "5", "net.ipv4.conf.IFNAME.no_such_key": "1"}},
		// The MTU fails after the sysctls are set: they must be undone.
		"mtu too big": {"mtu": 1 << 20, "sysctl": map[string]string{"net.core.somaxconn": "5"}, "mac": "02:4b:00:00:00:09"},
		"bad mac":     {"mac": "zz", "sysctl": map[string]string{"net.core.somaxconn": "5"}},
		"kernel key":  {"sysctl": map[string]string{"kernel.hostname": "x"}},
	} {
		r := l.exec("ADD", l.conf(extra))
		var e cni.Error
		if r.ExitCode == 0 || json.Unmarshal(r.Stdout, &e) != nil || e.Msg == "" {
			t.Errorf("%s: exit %d %s", name, r.ExitCode, r.Stdout)
		}
		if got := l.snapshot(); got != before {
			t.Errorf("%s changed the container: %+v -> %+v", name, before, got)
		}
		if _, err := os.Stat(stateFile(l.dataDir, l.container, "eth0")); !os.IsNotExist(err) {
			t.Errorf("%s left saved state: %v", name, err)
		}
	}
}

// A CNI_NETNS that does not exist is code 4 and names the path, as in
// every knit plugin.
func TestMissingNetnsIsCode4(t *testing.T) {
	l := newLab(t, nstest.Plugins(t))
	gone := filepath.Join(t.TempDir(), "gone")
	env := map[string]string{"CNI_CONTAINERID": l.container, "CNI_NETNS": gone, "CNI_IFNAME": "eth0"}
	r := nstest.Exec(t, l.host, l.plugins, "tuning", "ADD", env, l.conf(map[string]any{"mtu": 1300}))
	var e cni.Error
	if r.ExitCode == 0 || json.Unmarshal(r.Stdout, &e) != nil || e.Code != cni.ErrInvalidEnvironmentVariables || !strings.Contains(e.Msg, gone) {
		t.Errorf("ADD with a missing netns: exit %d %s; want code 4 naming %s", r.ExitCode, r.Stdout, gone)
	}
}

func TestDelWithoutNetnsAndGC(t *testing.T) {
	l := newLab(t, nstest.Plugins(t))
	conf := l.conf(map[string]any{"mtu": 1400})
	l.mustRun("ADD", conf)
	file := stateFile(l.dataDir, l.container, "eth0")
	env := map[string]string{"CNI_CONTAINERID": l.container, "CNI_NETNS": "/run/netns/knit-gone-" + l.container, "CNI_IFNAME": "eth0"}
	if r := nstest.Exec(t, l.host, l.plugins, "tuning", "DEL", env, conf); r.ExitCode != 0 {
		t.Fatalf("DEL with the netns gone: %s", r.Stdout)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("record left: %v", err)
	}

	// GC: records of gone attachments of this network go; valid ones, other
	// networks' and the reference's (no network) stay.
	l.mustRun("ADD", conf)
	write := func(name string, rec saved) string {
		p := filepath.Join(l.dataDir, name)
		b, _ := json.Marshal(rec)
		os.WriteFile(p, b, 0o600)
		return p
	}
	stale := write("gone_id_eth0.json", saved{Mtu: 1500, Network: "tunet"})
	other := write("gone2_eth0.json", saved{Mtu: 1500, Network: "othernet"})
	ref := write("gone3_eth0.json", saved{Mtu: 1500})
	gc, _ := json.Marshal(map[string]any{"cniVersion": "1.1.0", "name": "tunet", "type": "tuning", "dataDir": l.dataDir,
		"cni.dev/valid-attachments": []cni.GCAttachment{{ContainerID: l.container, IfName: "eth0"}}})
	if r := nstest.Exec(t, l.host, l.plugins, "tuning", "GC", nil, gc); r.ExitCode != 0 {
		t.Fatalf("GC: %s", r.Stdout)
	}
	for p, want := range map[string]bool{file: true, stale: false, other: true, ref: true} {
		_, err := os.Stat(p)
		if (err == nil) != want {
			t.Errorf("after GC %s exists = %v, want %v", filepath.Base(p), err == nil, want)
		}
	}
}

// TestReferenceRecord: the reference plugin's ADD saves the originals in
// the same file, and knit's DEL restores them.
func TestReferenceRecord(t *testing.T) {
	const ref = "/usr/lib/cni/tuning"
	if _, err := os.Stat(ref); err != nil {
		t.Skip("reference plugin not installed:", err)
	}
	dir := t.TempDir()
	os.Symlink(ref, filepath.Join(dir, "tuning"))
	l := newLab(t, dir)
	before := l.snapshot()
	conf := l.conf(map[string]any{"mtu": 1300, "mac": "02:4b:00:00:00:0a", "promisc": true})
	l.mustRun("ADD", conf)
	if got := l.snapshot(); got.MTU != 1300 || got.MAC != "02:4b:00:00:00:0a" || !got.Promisc {
		t.Fatalf("reference ADD did not tune: %+v", got)
	}
	l.plugins = nstest.Plugins(t)
	l.mustRun("CHECK", conf)
	l.mustRun("DEL", conf)
	if got := l.snapshot(); got != before {
		t.Errorf("knit DEL after reference ADD: %+v, want %+v", got, before)
	}
}
