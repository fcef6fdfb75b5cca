package runtime

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/containernetworking/cni/libcni"
	refinvoke "github.com/containernetworking/cni/pkg/invoke"
	reftypes "github.com/containernetworking/cni/pkg/types"
	refversion "github.com/containernetworking/cni/pkg/version"
	refdebug "github.com/containernetworking/cni/plugins/test/noop/debug"

	"github.com/knit-cni/knit/pkg/cni"
	"github.com/knit-cni/knit/pkg/cni/invoke"
)

// oracle runs the same scenario through knit's runtime and the reference
// libcni, both driving the reference noop plugin, and compares what the
// plugins received.
type oracle struct {
	t         *testing.T
	pluginDir string
	debug     [2]string // per-plugin debug files
	cmdLog    string
	listBytes []byte
	result    string // what the first plugin answers to ADD
}

func newOracle(t *testing.T) *oracle {
	return newOracleVersion(t, `"cniVersion":"1.1.0"`, "1.1.0")
}

// newOracleVersion builds the scenario list with the given version keys;
// resultVersion is the version the list selects (the plugin answers in it).
func newOracleVersion(t *testing.T, versionKeys, resultVersion string) *oracle {
	o := &oracle{t: t, pluginDir: t.TempDir()}
	if err := os.Symlink(filepath.Join(binDir, "noop"), filepath.Join(o.pluginDir, "noop")); err != nil {
		t.Fatal(err)
	}
	d := t.TempDir()
	o.debug = [2]string{filepath.Join(d, "debug1"), filepath.Join(d, "debug2")}
	o.cmdLog = filepath.Join(d, "cmdlog")
	o.resetLog()
	res, err := cni.ParseResult([]byte(oracleResult), "")
	if err != nil {
		t.Fatal(err)
	}
	out, err := res.Encode(resultVersion)
	if err != nil {
		t.Fatal(err)
	}
	o.result = string(out)
	o.listBytes = []byte(`{` + versionKeys + `,"name":"net1","plugins":[` +
		`{"type":"noop","debugFile":"` + o.debug[0] + `","commandLog":"` + o.cmdLog + `","capabilities":{"mac":true,"off":false},"a":"<&>","big":12345678901234567890,"nested":{"x":[1,2.5,"s"]}},` +
		`{"type":"noop","debugFile":"` + o.debug[1] + `","commandLog":"` + o.cmdLog + `","runtimeConfig":{"x":1},"capabilities":{"portMappings":true}}]}`)
	return o
}

const oracleResult = `{"cniVersion":"1.1.0","interfaces":[{"name":"eth0","mtu":1400,"sandbox":"/x"}],"ips":[{"address":"10.0.0.2/24","gateway":"10.0.0.1","interface":0}],"routes":[{"dst":"0.0.0.0/0","mtu":1300,"table":0,"scope":0,"priority":5}],"dns":{"nameservers":["1.1.1.1"]},"extra":"x"}`

// prime sets the plugins' answers for the next command and clears the log
// when asked.
func (o *oracle) prime(add bool) {
	r1, r2 := "", ""
	if add {
		r1, r2 = o.result, "PASSTHROUGH"
	}
	for i, r := range []string{r1, r2} {
		if err := (&refdebug.Debug{ReportResult: r}).WriteDebug(o.debug[i]); err != nil {
			o.t.Fatal(err)
		}
	}
}

func (o *oracle) resetLog() {
	if err := os.WriteFile(o.cmdLog, nil, 0o600); err != nil {
		o.t.Fatal(err)
	}
}

// entry is one normalised invocation: command, CNI_* values and stdin as
// generic JSON (key order and number formatting do not matter).
type entry struct {
	Command, ContainerID, Netns, IfName, Args, Path string
	Stdin                                           any
}

func (o *oracle) log() []entry {
	o.t.Helper()
	cmds, err := refdebug.ReadCommandLog(o.cmdLog)
	if err != nil {
		o.t.Fatal(err)
	}
	var out []entry
	for _, c := range cmds {
		e := entry{Command: c.Command, ContainerID: c.CmdArgs.ContainerID, Netns: c.CmdArgs.Netns, IfName: c.CmdArgs.IfName, Args: c.CmdArgs.Args, Path: c.CmdArgs.Path}
		if err := json.Unmarshal(c.CmdArgs.StdinData, &e.Stdin); err != nil {
			o.t.Fatalf("stdin %s: %v", c.CmdArgs.StdinData, err)
		}
		out = append(out, e)
	}
	return out
}

// ops abstracts the two runtimes for the scenario.
type ops struct {
	add    func(rt *RuntimeConf) error
	check  func(rt *RuntimeConf) error
	del    func(rt *RuntimeConf) error
	gc     func(valid []cni.GCAttachment) error
	status func() error
}

func (o *oracle) scenario(version string, x ops) []entry {
	o.t.Helper()
	o.resetLog()
	c1 := &RuntimeConf{ContainerID: "c1", NetNS: "/x", IfName: "eth0", Args: [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAME", "p"}},
		CapabilityArgs: map[string]any{"mac": "aa:bb:cc:dd:ee:ff", "portMappings": []any{map[string]any{"hostPort": 8080.0, "containerPort": 80.0, "protocol": "tcp"}}}}
	c2 := &RuntimeConf{ContainerID: "c2", NetNS: "/y", IfName: "net1"}
	step := func(name string, add bool, f func() error) {
		o.prime(add)
		if err := f(); err != nil {
			o.t.Fatalf("%s: %v", name, err)
		}
	}
	step("add c1", true, func() error { return x.add(c1) })
	if cni.VersionAtLeast(version, cni.Version040) {
		step("check c1", false, func() error { return x.check(c1) })
	}
	step("add c2", true, func() error { return x.add(c2) })
	step("gc", false, func() error { return x.gc([]cni.GCAttachment{{ContainerID: "c2", IfName: "net1"}}) })
	step("status", false, func() error { return x.status() })
	step("del c2", false, func() error { return x.del(c2) })
	step("del c2 again", false, func() error { return x.del(c2) })
	return o.log()
}

func refRT(rt *RuntimeConf) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: rt.ContainerID, NetNS: rt.NetNS, IfName: rt.IfName, Args: rt.Args, CapabilityArgs: rt.CapabilityArgs}
}

func TestOracleWireCompatibility(t *testing.T) {
	cases := []struct {
		keys, version string
		invocations   int
	}{
		{`"cniVersion":"1.1.0"`, "1.1.0", 16}, // ADD, CHECK, ADD, stale DEL, GC, STATUS, DEL, DEL: 2 plugins each
		{`"cniVersion":"0.3.1","cniVersions":["0.4.0","1.0.0","9.9.9"]`, "1.0.0", 12},
		{`"cniVersion":"0.4.0"`, "0.4.0", 12},
		{`"cniVersion":"0.3.1"`, "0.3.1", 10},
	}
	for _, tc := range cases {
		t.Run(tc.version, func(t *testing.T) { oracleCompare(t, tc.keys, tc.version, tc.invocations) })
	}
}

func oracleCompare(t *testing.T, keys, version string, invocations int) {
	o := newOracleVersion(t, keys, version)
	ctx := context.Background()

	ours := New(Config{Paths: []string{o.pluginDir}, CacheDir: t.TempDir()})
	list, err := cni.ParseConfigList(o.listBytes)
	if err != nil {
		t.Fatal(err)
	}
	if list.CNIVersion != version {
		t.Fatalf("selected version %q, want %q", list.CNIVersion, version)
	}
	got := o.scenario(version, ops{
		add:    func(rt *RuntimeConf) error { _, err := ours.AddNetworkList(ctx, list, rt); return err },
		check:  func(rt *RuntimeConf) error { return ours.CheckNetworkList(ctx, list, rt) },
		del:    func(rt *RuntimeConf) error { return ours.DelNetworkList(ctx, list, rt) },
		gc:     func(v []cni.GCAttachment) error { return ours.GCNetworkList(ctx, list, &GCArgs{ValidAttachments: v}) },
		status: func() error { return ours.GetStatusNetworkList(ctx, list) },
	})

	ref := libcni.NewCNIConfigWithCacheDir([]string{o.pluginDir}, t.TempDir(), nil)
	rlist, err := libcni.NetworkConfFromBytes(o.listBytes)
	if err != nil {
		t.Fatal(err)
	}
	want := o.scenario(version, ops{
		add:   func(rt *RuntimeConf) error { _, err := ref.AddNetworkList(ctx, rlist, refRT(rt)); return err },
		check: func(rt *RuntimeConf) error { return ref.CheckNetworkList(ctx, rlist, refRT(rt)) },
		del:   func(rt *RuntimeConf) error { return ref.DelNetworkList(ctx, rlist, refRT(rt)) },
		gc: func(v []cni.GCAttachment) error {
			var rv []reftypes.GCAttachment
			for _, a := range v {
				rv = append(rv, reftypes.GCAttachment{ContainerID: a.ContainerID, IfName: a.IfName})
			}
			return ref.GCNetworkList(ctx, rlist, &libcni.GCArgs{ValidAttachments: rv})
		},
		status: func() error { return ref.GetStatusNetworkList(ctx, rlist) },
	})

	if len(got) != len(want) {
		t.Fatalf("knit ran %d plugin invocations, libcni %d", len(got), len(want))
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			g, _ := json.MarshalIndent(got[i], "", " ")
			w, _ := json.MarshalIndent(want[i], "", " ")
			t.Errorf("invocation %d differs\nknit:   %s\nlibcni: %s", i, g, w)
		}
	}
	if len(want) != invocations {
		t.Errorf("scenario ran %d invocations, want %d", len(want), invocations)
	}
}

// normJSON decodes JSON into generic values for comparison.
func normJSON(t *testing.T, data []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("%s: %v", data, err)
	}
	return v
}

func TestCacheInteropReferenceToKnit(t *testing.T) {
	o := newOracle(t)
	ctx := context.Background()
	cacheDir := t.TempDir()
	ref := libcni.NewCNIConfigWithCacheDir([]string{o.pluginDir}, cacheDir, nil)
	rlist, err := libcni.NetworkConfFromBytes(o.listBytes)
	if err != nil {
		t.Fatal(err)
	}
	rt := &RuntimeConf{ContainerID: "c1", NetNS: "/x", IfName: "eth0", Args: [][2]string{{"K", "V"}}, CapabilityArgs: map[string]any{"mac": "aa:bb:cc:dd:ee:ff"}}
	o.prime(true)
	refRes, err := ref.AddNetworkList(ctx, rlist, refRT(rt))
	if err != nil {
		t.Fatal(err)
	}
	refJSON, _ := json.Marshal(refRes)

	ours := New(Config{Paths: []string{o.pluginDir}, CacheDir: cacheDir})
	list, _ := cni.ParseConfigList(o.listBytes)
	atts, err := ours.GetCachedAttachments("c1")
	if err != nil || len(atts) != 1 {
		t.Fatalf("attachments = %v, %v", atts, err)
	}
	a := atts[0]
	if a.ContainerID != "c1" || a.IfName != "eth0" || a.NetworkName != "net1" || a.NetNS != "/x" ||
		!reflect.DeepEqual(a.Args, rt.Args) || !reflect.DeepEqual(a.CapabilityArgs, rt.CapabilityArgs) ||
		string(a.Config) != string(o.listBytes) || a.Result == nil {
		t.Errorf("attachment read from libcni's cache = %+v", a)
	}
	res, err := ours.GetNetworkListCachedResult(list, rt)
	if err != nil {
		t.Fatal(err)
	}
	ourJSON, _ := json.Marshal(res)
	if !reflect.DeepEqual(normJSON(t, ourJSON), normJSON(t, refJSON)) {
		t.Errorf("cached result\nknit:   %s\nlibcni: %s", ourJSON, refJSON)
	}
	conf, crt, err := ours.GetNetworkListCachedConfig(list, &RuntimeConf{ContainerID: "c1", IfName: "eth0"})
	if err != nil || string(conf) != string(o.listBytes) || !reflect.DeepEqual(crt.Args, rt.Args) {
		t.Errorf("cached config = %s, %+v, %v", conf, crt, err)
	}
	o.resetLog()
	o.prime(false)
	if err := ours.DelNetworkList(ctx, list, rt); err != nil {
		t.Fatal(err)
	}
	log := o.log()
	if len(log) != 2 {
		t.Fatalf("DEL ran %d plugins", len(log))
	}
	prev, _ := json.Marshal(log[0].Stdin.(map[string]any)["prevResult"])
	if !reflect.DeepEqual(normJSON(t, prev), normJSON(t, refJSON)) {
		t.Errorf("DEL prevResult from libcni's cache = %s, want %s", prev, refJSON)
	}
	if atts, _ := ref.GetCachedAttachments(""); len(atts) != 0 {
		t.Errorf("cache file left after knit DEL: %v", atts)
	}
}

func TestCacheInteropKnitToReference(t *testing.T) {
	o := newOracle(t)
	ctx := context.Background()
	cacheDir := t.TempDir()
	ours := New(Config{Paths: []string{o.pluginDir}, CacheDir: cacheDir})
	list, _ := cni.ParseConfigList(o.listBytes)
	rt := &RuntimeConf{ContainerID: "c1", NetNS: "/x", IfName: "eth0", Args: [][2]string{{"K", "V"}}, CapabilityArgs: map[string]any{"mac": "aa:bb:cc:dd:ee:ff"}}
	o.prime(true)
	res, err := ours.AddNetworkList(ctx, list, rt)
	if err != nil {
		t.Fatal(err)
	}
	ourJSON, _ := json.Marshal(res)

	ref := libcni.NewCNIConfigWithCacheDir([]string{o.pluginDir}, cacheDir, nil)
	rlist, _ := libcni.NetworkConfFromBytes(o.listBytes)
	refRes, err := ref.GetNetworkListCachedResult(rlist, refRT(rt))
	if err != nil || refRes == nil {
		t.Fatalf("libcni reading knit's cache: %v, %v", refRes, err)
	}
	refJSON, _ := json.Marshal(refRes)
	if !reflect.DeepEqual(normJSON(t, ourJSON), normJSON(t, refJSON)) {
		t.Errorf("cached result\nknit:   %s\nlibcni: %s", ourJSON, refJSON)
	}
	atts, err := ref.GetCachedAttachments("c1")
	if err != nil || len(atts) != 1 {
		t.Fatalf("libcni attachments = %v, %v", atts, err)
	}
	a := atts[0]
	if a.ContainerID != "c1" || a.IfName != "eth0" || a.Network != "net1" || a.NetNS != "/x" ||
		!reflect.DeepEqual(a.CniArgs, rt.Args) || !reflect.DeepEqual(a.CapabilityArgs, rt.CapabilityArgs) || string(a.Config) != string(o.listBytes) {
		t.Errorf("libcni attachment = %+v", a)
	}
	conf, crt, err := ref.GetNetworkListCachedConfig(rlist, &libcni.RuntimeConf{ContainerID: "c1", IfName: "eth0"})
	if err != nil || string(conf) != string(o.listBytes) || !reflect.DeepEqual(crt.Args, rt.Args) {
		t.Errorf("libcni cached config = %s, %+v, %v", conf, crt, err)
	}
	o.prime(false)
	if err := ref.DelNetworkList(ctx, rlist, refRT(rt)); err != nil {
		t.Fatal(err)
	}
	if atts, _ := ours.GetCachedAttachments(""); len(atts) != 0 {
		t.Errorf("knit cache left after libcni DEL")
	}
}

// A bare result file (libcni before cniCacheV1) still gives the result but
// is not an attachment.
func TestLegacyCacheFile(t *testing.T) {
	dir := t.TempDir()
	c := New(Config{CacheDir: dir})
	os.MkdirAll(filepath.Join(dir, "results"), 0o700)
	os.WriteFile(filepath.Join(dir, "results", "net1-c1-eth0"), []byte(`{"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.0.0.2/24"}]}`), 0o600)
	list := &cni.NetworkConfigList{Name: "net1", CNIVersion: "1.0.0"}
	res, err := c.GetNetworkListCachedResult(list, &RuntimeConf{ContainerID: "c1", IfName: "eth0"})
	if err != nil || res.CNIVersion != "1.0.0" || len(res.IPs) != 1 {
		t.Errorf("legacy result = %+v, %v", res, err)
	}
	if atts, err := c.GetCachedAttachments(""); err != nil || len(atts) != 0 {
		t.Errorf("legacy file listed as attachment: %v, %v", atts, err)
	}
	if _, _, err := c.GetNetworkListCachedConfig(list, &RuntimeConf{ContainerID: "c1", IfName: "eth0"}); err == nil {
		t.Errorf("legacy file gave a cached config")
	}
}

// BenchmarkAddDel measures one ADD+DEL of a two-plugin list (reference noop
// plugins) through knit's runtime and through libcni, cache included.
func BenchmarkAddDel(b *testing.B) {
	dir := b.TempDir()
	if err := os.Symlink(filepath.Join(binDir, "noop"), filepath.Join(dir, "noop")); err != nil {
		b.Fatal(err)
	}
	data := []byte(`{"cniVersion":"1.1.0","name":"bench","plugins":[{"type":"noop"},{"type":"noop"}]}`)
	rt := &RuntimeConf{ContainerID: "c1", NetNS: "/x", IfName: "eth0"}
	ctx := context.Background()
	b.Run("knit", func(b *testing.B) {
		c := New(Config{Paths: []string{dir}, CacheDir: b.TempDir(), Exec: &invoke.RawExec{}})
		list, _ := cni.ParseConfigList(data)
		for i := 0; i < b.N; i++ {
			if _, err := c.AddNetworkList(ctx, list, rt); err != nil {
				b.Fatal(err)
			}
			if err := c.DelNetworkList(ctx, list, rt); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("libcni", func(b *testing.B) {
		c := libcni.NewCNIConfigWithCacheDir([]string{dir}, b.TempDir(), &refinvoke.DefaultExec{RawExec: &refinvoke.RawExec{}, PluginDecoder: refversion.PluginDecoder{}})
		list, _ := libcni.NetworkConfFromBytes(data)
		for i := 0; i < b.N; i++ {
			if _, err := c.AddNetworkList(ctx, list, refRT(rt)); err != nil {
				b.Fatal(err)
			}
			if err := c.DelNetworkList(ctx, list, refRT(rt)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
