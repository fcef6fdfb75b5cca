package conformance

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/knit-cni/knit/internal/nstest"
	"github.com/knit-cni/knit/pkg/cni"
	"github.com/knit-cni/knit/pkg/cni/runtime"
)

// refVersions are the versions Debian's reference plugins support.
var refVersions = []string{"0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"}

func requireRefPlugins(t *testing.T, types ...string) {
	t.Helper()
	nstest.RequireRoot(t)
	for _, typ := range types {
		if _, err := os.Stat(filepath.Join(refPlugins, typ)); err != nil {
			t.Skipf("reference plugin %s not installed: %v", typ, err)
		}
	}
}

// pair is one attachment made twice, by knit's runtime and by libcni, each
// with its own cache directory (and, per test, its own namespaces).
type pair struct {
	confBytes []byte
	knit      *runtime.CNI
	ref       *libcni.CNIConfig
	knitCache string
	refCache  string
	knitList  *cni.NetworkConfigList
	refList   *libcni.NetworkConfigList
}

func newPair(t *testing.T, conf string) *pair {
	t.Helper()
	p := &pair{confBytes: []byte(conf), knitCache: t.TempDir(), refCache: t.TempDir()}
	p.knit = runtime.New(runtime.Config{Paths: []string{refPlugins}, CacheDir: p.knitCache})
	p.ref = libcni.NewCNIConfigWithCacheDir([]string{refPlugins}, p.refCache, nil)
	var err error
	p.knitList, err = cni.ParseConfigList(p.confBytes)
	must(t, "knit parsing the conflist", err)
	p.refList, err = libcni.ConfListFromBytes(p.confBytes)
	must(t, "libcni parsing the conflist", err)
	return p
}

func (p *pair) knitAdd(t *testing.T, host string, rt *runtime.RuntimeConf) *cni.Result {
	t.Helper()
	var res *cni.Result
	must(t, "knit AddNetworkList", inHost(t, host, func(ctx context.Context) error {
		var err error
		res, err = p.knit.AddNetworkList(ctx, p.knitList, rt)
		return err
	}))
	return res
}

func (p *pair) refAdd(t *testing.T, host string, rt *runtime.RuntimeConf) *cni.Result {
	t.Helper()
	var res types.Result
	must(t, "libcni AddNetworkList", inHost(t, host, func(ctx context.Context) error {
		var err error
		res, err = p.ref.AddNetworkList(ctx, p.refList, refRT(rt))
		return err
	}))
	return fromLibcni(t, res)
}

func refRT(rt *runtime.RuntimeConf) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: rt.ContainerID, NetNS: rt.NetNS, IfName: rt.IfName, Args: rt.Args}
}

// fromLibcni re-reads a result libcni parsed with knit's parser, so the two
// runtimes' results compare in one model.
func fromLibcni(t *testing.T, res types.Result) *cni.Result {
	t.Helper()
	var buf bytes.Buffer
	must(t, "printing libcni's result", res.PrintTo(&buf))
	r, err := cni.ParseResult(buf.Bytes(), res.Version())
	must(t, "parsing libcni's result with knit", err)
	return r
}

func encode(t *testing.T, r *cni.Result, v string) string {
	t.Helper()
	b, err := r.Encode(v)
	must(t, "encoding result", err)
	return string(b)
}

// TestRuntimeDrivesReferenceLoopback: knit's runtime and libcni get the same
// result from Debian's loopback, and each reads the other's cache.
func TestRuntimeDrivesReferenceLoopback(t *testing.T) {
	requireRefPlugins(t, "loopback")
	for _, v := range refVersions {
		t.Run(v, func(t *testing.T) {
			host := nstest.New(t, "rlh")
			ctrK, ctrR := nstest.New(t, "rlk"), nstest.New(t, "rlr")
			p := newPair(t, fmt.Sprintf(`{"cniVersion":%q,"name":"ref-lo","plugins":[{"type":"loopback"}]}`, v))
			rtK := &runtime.RuntimeConf{ContainerID: "rl-1", NetNS: ctrK, IfName: "eth0", Args: [][2]string{{"IgnoreUnknown", "1"}}}
			rtR := &runtime.RuntimeConf{ContainerID: "rl-1", NetNS: ctrR, IfName: "eth0", Args: [][2]string{{"IgnoreUnknown", "1"}}}

			knitRes := p.knitAdd(t, host, rtK)
			refRes := p.refAdd(t, host, rtR)
			for _, r := range []*cni.Result{knitRes, refRes} {
				for _, i := range r.Interfaces {
					i.Sandbox = "SANDBOX"
				}
			}
			if k, r := encode(t, knitRes, v), encode(t, refRes, v); k != r {
				t.Errorf("results differ\nknit   %s\nlibcni %s", k, r)
			}
			if knitRes.CNIVersion != v {
				t.Errorf("knit result version %q, want %q", knitRes.CNIVersion, v)
			}
			if !nstest.LinkUp(t, ctrK, "lo") {
				t.Fatal("lo not up after knit's ADD")
			}

			// Same cache layout: file names, keys and config bytes.
			compareCaches(t, p.knitCache, p.refCache)

			// libcni reads knit's cache and vice versa.
			cross := libcni.NewCNIConfigWithCacheDir([]string{refPlugins}, p.knitCache, nil)
			cached, err := cross.GetNetworkListCachedResult(p.refList, refRT(rtK))
			must(t, "libcni reading knit's cache", err)
			if cached == nil {
				t.Fatal("libcni finds no cached result in knit's cache")
			}
			crossK := runtime.New(runtime.Config{Paths: []string{refPlugins}, CacheDir: p.refCache})
			kc, err := crossK.GetNetworkListCachedResult(p.knitList, rtR)
			must(t, "knit reading libcni's cache", err)
			if kc == nil {
				t.Fatal("knit finds no cached result in libcni's cache")
			}

			if cni.VersionAtLeast(v, cni.Version040) {
				must(t, "knit CHECK", inHost(t, host, func(ctx context.Context) error {
					return p.knit.CheckNetworkList(ctx, p.knitList, rtK)
				}))
			} else {
				err := inHost(t, host, func(ctx context.Context) error { return p.knit.CheckNetworkList(ctx, p.knitList, rtK) })
				if err == nil {
					t.Errorf("knit ran CHECK on a %s list", v)
				}
			}
			must(t, "knit DEL", inHost(t, host, func(ctx context.Context) error { return p.knit.DelNetworkList(ctx, p.knitList, rtK) }))
			if nstest.LinkUp(t, ctrK, "lo") {
				t.Error("lo still up after knit's DEL")
			}
			// libcni DELs its own attachment.
			must(t, "libcni DEL", inHost(t, host, func(ctx context.Context) error { return p.ref.DelNetworkList(ctx, p.refList, refRT(rtR)) }))
			for _, d := range []string{p.knitCache, p.refCache} {
				if files := cacheFiles(t, d); len(files) != 0 {
					t.Errorf("cache files left in %s: %v", d, files)
				}
			}
		})
	}
}

// compareCaches checks both runtimes wrote one cache file of the same name
// with the same keys and the same config.
func compareCaches(t *testing.T, knitDir, refDir string) {
	t.Helper()
	kf, rf := cacheFiles(t, knitDir), cacheFiles(t, refDir)
	if len(kf) != 1 || !slices.Equal(kf, rf) {
		t.Fatalf("cache files differ: knit %v, libcni %v", kf, rf)
	}
	read := func(dir string) map[string]json.RawMessage {
		data, err := os.ReadFile(filepath.Join(dir, "results", kf[0]))
		must(t, "reading cache file", err)
		var m map[string]json.RawMessage
		must(t, "decoding cache file", json.Unmarshal(data, &m))
		return m
	}
	k, r := read(knitDir), read(refDir)
	var kk, rk []string
	for key := range k {
		kk = append(kk, key)
	}
	for key := range r {
		rk = append(rk, key)
	}
	slices.Sort(kk)
	slices.Sort(rk)
	if !slices.Equal(kk, rk) {
		t.Errorf("cache keys differ: knit %v, libcni %v", kk, rk)
	}
	for _, key := range []string{"kind", "config", "containerId", "ifName", "networkName", "cniArgs"} {
		if string(k[key]) != string(r[key]) {
			t.Errorf("cache %s differs: knit %s, libcni %s", key, k[key], r[key])
		}
	}
}

func hostLocalConf(version, dataDir string) string {
	return fmt.Sprintf(`{"cniVersion":%q,"name":"ref-hl","plugins":[{"type":"host-local","ipam":{"type":"host-local",`+
		`"ranges":[[{"subnet":"10.77.0.0/24"}],[{"subnet":"fd77::/64"}]],"routes":[{"dst":"0.0.0.0/0"}],"dataDir":%q}}]}`,
		version, dataDir)
}

func dataFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "ref-hl"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if e.Name() != "lock" {
			names = append(names, e.Name())
		}
	}
	return names
}

// TestRuntimeDrivesReferenceHostLocal: host-local run standalone by both
// runtimes, each with its own data directory, allocates the same addresses;
// CHECK, DEL and GC release them.
func TestRuntimeDrivesReferenceHostLocal(t *testing.T) {
	requireRefPlugins(t, "host-local")
	for _, v := range []string{"0.2.0", "0.3.1", "0.4.0", "1.0.0"} {
		t.Run(v, func(t *testing.T) {
			host := nstest.New(t, "rhh")
			dataK, dataR := t.TempDir(), t.TempDir()
			pk := newPair(t, hostLocalConf(v, dataK))
			pr := newPair(t, hostLocalConf(v, dataR))
			rt := &runtime.RuntimeConf{ContainerID: "rh-1", NetNS: "/var/run/netns/unused", IfName: "eth0"}

			knitRes := pk.knitAdd(t, host, rt)
			refRes := pr.refAdd(t, host, rt)
			if k, r := encode(t, knitRes, v), encode(t, refRes, v); k != r {
				t.Errorf("results differ\nknit   %s\nlibcni %s", k, r)
			}
			var addrs []string
			for _, ip := range knitRes.IPs {
				addrs = append(addrs, ip.Address.String())
			}
			if !slices.Equal(addrs, []string{"10.77.0.2/24", "fd77::2/64"}) {
				t.Errorf("allocated %v, want [10.77.0.2/24 fd77::2/64]", addrs)
			}
			if k, r := dataFiles(t, dataK), dataFiles(t, dataR); !slices.Equal(k, r) || len(k) == 0 {
				t.Errorf("data directories differ: knit %v, libcni %v", k, r)
			}

			if cni.VersionAtLeast(v, cni.Version040) {
				must(t, "knit CHECK", inHost(t, host, func(ctx context.Context) error {
					return pk.knit.CheckNetworkList(ctx, pk.knitList, rt)
				}))
			}
			if v == "1.0.0" {
				// GC keeping nothing makes both runtimes DEL the cached attachment.
				must(t, "knit GC", inHost(t, host, func(ctx context.Context) error {
					return pk.knit.GCNetworkList(ctx, pk.knitList, &runtime.GCArgs{})
				}))
				must(t, "libcni GC", inHost(t, host, func(ctx context.Context) error {
					return pr.ref.GCNetworkList(ctx, pr.refList, &libcni.GCArgs{})
				}))
			} else {
				must(t, "knit DEL", inHost(t, host, func(ctx context.Context) error { return pk.knit.DelNetworkList(ctx, pk.knitList, rt) }))
				must(t, "libcni DEL", inHost(t, host, func(ctx context.Context) error {
					return pr.ref.DelNetworkList(ctx, pr.refList, refRT(rt))
				}))
			}
			for _, d := range []string{dataK, dataR} {
				for _, f := range dataFiles(t, d) {
					if f != "last_reserved_ip.0" && f != "last_reserved_ip.1" {
						t.Errorf("reservation %s left in %s", f, d)
					}
				}
			}
			for _, d := range []string{pk.knitCache, pr.refCache} {
				if files := cacheFiles(t, d); len(files) != 0 {
					t.Errorf("cache files left in %s: %v", d, files)
				}
			}
		})
	}
}

// TestRuntimeDrivesReferenceBridge: Debian's bridge with host-local in a
// test-made host namespace; random names and MACs differ, so the results
// are compared by shape.
func TestRuntimeDrivesReferenceBridge(t *testing.T) {
	requireRefPlugins(t, "bridge", "host-local", "loopback")
	for _, v := range []string{"0.4.0", "1.0.0"} {
		t.Run(v, func(t *testing.T) {
			conf := func(dataDir string) string {
				return fmt.Sprintf(`{"cniVersion":%q,"name":"ref-br","plugins":[`+
					`{"type":"bridge","bridge":"kbr0","isGateway":true,"ipam":{"type":"host-local",`+
					`"ranges":[[{"subnet":"10.78.0.0/24"}]],"routes":[{"dst":"0.0.0.0/0"}],"dataDir":%q}},`+
					`{"type":"loopback"}]}`, v, dataDir)
			}
			var results [2]*cni.Result
			var ctrs [2]string
			for i, name := range []string{"knit", "libcni"} {
				host, ctr := nstest.HostAndContainer(t, "rb")
				ctrs[i] = ctr
				p := newPair(t, conf(t.TempDir()))
				rt := &runtime.RuntimeConf{ContainerID: "rb-1", NetNS: ctr, IfName: "eth0"}
				if name == "knit" {
					results[i] = p.knitAdd(t, host, rt)
					must(t, "knit CHECK", inHost(t, host, func(ctx context.Context) error {
						return p.knit.CheckNetworkList(ctx, p.knitList, rt)
					}))
				} else {
					results[i] = p.refAdd(t, host, rt)
				}
				checkBridgeShape(t, name, results[i], ctr)
				if !nstest.LinkExists(t, ctr, "eth0") || !nstest.LinkExists(t, host, "kbr0") {
					t.Fatalf("%s: eth0 or kbr0 missing after ADD", name)
				}
				if got := nstest.Addrs(t, ctr, "eth0"); !slices.Contains(got, "10.78.0.2/24") {
					t.Errorf("%s: eth0 has %v", name, got)
				}
				if name == "knit" {
					must(t, "knit DEL", inHost(t, host, func(ctx context.Context) error { return p.knit.DelNetworkList(ctx, p.knitList, rt) }))
					if nstest.LinkExists(t, ctr, "eth0") {
						t.Error("eth0 still exists after knit's DEL")
					}
					if files := cacheFiles(t, p.knitCache); len(files) != 0 {
						t.Errorf("cache left: %v", files)
					}
				}
			}
			k, r := encode(t, results[0], v), encode(t, results[1], v)
			if normalizeBridge(k, ctrs[0]) != normalizeBridge(r, ctrs[1]) {
				t.Errorf("bridge results differ beyond names and MACs\nknit   %s\nlibcni %s", k, r)
			}
		})
	}
}

var (
	macRE  = regexp.MustCompile(`"mac":"[0-9a-f:]{17}"`)
	vethRE = regexp.MustCompile(`"name":"veth[0-9a-f]{8}"`)
)

func normalizeBridge(s, ctr string) string {
	s = macRE.ReplaceAllString(s, `"mac":"MAC"`)
	s = vethRE.ReplaceAllString(s, `"name":"VETH"`)
	return string(bytes.ReplaceAll([]byte(s), []byte(ctr), []byte("SANDBOX")))
}

func checkBridgeShape(t *testing.T, who string, r *cni.Result, ctr string) {
	t.Helper()
	if len(r.Interfaces) != 3 || r.Interfaces[0].Name != "kbr0" || !regexp.MustCompile(`^veth[0-9a-f]{8}$`).MatchString(r.Interfaces[1].Name) ||
		r.Interfaces[2].Name != "eth0" || r.Interfaces[2].Sandbox != ctr {
		t.Errorf("%s: interfaces %+v, want kbr0, vethXXXXXXXX, eth0 in the container", who, r.Interfaces)
		return
	}
	if len(r.IPs) != 1 || r.IPs[0].Address.String() != "10.78.0.2/24" || r.IPs[0].Gateway.String() != "10.78.0.1" ||
		r.IPs[0].Interface == nil || *r.IPs[0].Interface != 2 {
		t.Errorf("%s: ips %v", who, r.IPs)
	}
	if len(r.Routes) != 1 || r.Routes[0].Dst.String() != "0.0.0.0/0" {
		t.Errorf("%s: routes %v", who, r.Routes)
	}
}
