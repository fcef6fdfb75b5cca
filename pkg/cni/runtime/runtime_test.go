package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/knit-cni/knit/pkg/cni"
)

func mkList(t *testing.T, top map[string]any, plugins ...map[string]any) *cni.NetworkConfigList {
	t.Helper()
	m := map[string]any{"cniVersion": "1.1.0", "name": "net1"}
	for k, v := range top {
		m[k] = v
	}
	if plugins != nil {
		m["plugins"] = plugins
	}
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	list, err := cni.ParseConfigList(data)
	if err != nil {
		t.Fatalf("ParseConfigList: %v", err)
	}
	return list
}

var rt1 = &RuntimeConf{ContainerID: "c1", NetNS: "/var/run/netns/x", IfName: "eth0", Args: [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAME", "p"}}}

func cachePathOf(l *lab, net string, rt *RuntimeConf) string {
	return filepath.Join(l.cacheDir, "results", net+"-"+rt.ContainerID+"-"+rt.IfName)
}

// #1, #3: ADD chains prevResult and caches; DEL runs in reverse with the cached result.
func TestAddChainDelReverse(t *testing.T) {
	l := newLab(t, "fake-a", "fake-b", "fake-c")
	res1 := json.RawMessage(`{"cniVersion":"1.1.0","interfaces":[{"name":"eth0","sandbox":"/x"}],"ips":[{"address":"10.0.0.2/24","interface":0}],"extra":"dropped"}`)
	res2 := json.RawMessage(`{"cniVersion":"1.1.0","interfaces":[{"name":"eth0","sandbox":"/x","mac":"aa:bb:cc:dd:ee:ff"}],"ips":[{"address":"10.0.0.2/24","interface":0}]}`)
	list := mkList(t, nil,
		l.plugin("fake-a", map[string]fakeAction{"ADD": {Result: res1}}, nil),
		l.plugin("fake-b", map[string]fakeAction{"ADD": {Result: res2}}, nil),
		l.plugin("fake-c", nil, nil))
	c := l.cni()
	ctx := context.Background()
	res, err := c.AddNetworkList(ctx, list, rt1)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Interfaces) != 1 || res.Interfaces[0].Mac != "aa:bb:cc:dd:ee:ff" {
		t.Fatalf("final result = %+v", res)
	}
	recs := l.records()
	if len(recs) != 3 {
		t.Fatalf("%d invocations, want 3", len(recs))
	}
	for i, r := range recs {
		m := r.stdinMap(t)
		if r.Plugin != []string{"fake-a", "fake-b", "fake-c"}[i] || r.Command != "ADD" {
			t.Errorf("invocation %d = %s %s", i, r.Plugin, r.Command)
		}
		if m["name"] != "net1" || m["cniVersion"] != "1.1.0" {
			t.Errorf("%s: name/cniVersion not injected: %s", r.Plugin, r.Stdin)
		}
		want := map[string]string{"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/var/run/netns/x",
			"CNI_IFNAME": "eth0", "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAME=p", "CNI_PATH": l.pluginD}
		if !reflect.DeepEqual(r.Env, want) {
			t.Errorf("%s env = %v", r.Plugin, r.Env)
		}
		_, has := m["prevResult"]
		if has != (i > 0) {
			t.Errorf("%s: prevResult present = %v", r.Plugin, has)
		}
	}
	prev1, _ := json.Marshal(recs[1].stdinMap(t)["prevResult"])
	if strings.Contains(string(prev1), "dropped") || !strings.Contains(string(prev1), "10.0.0.2/24") {
		t.Errorf("plugin 2 prevResult = %s", prev1)
	}
	prev2, _ := json.Marshal(recs[2].stdinMap(t)["prevResult"])
	if !strings.Contains(string(prev2), "aa:bb:cc:dd:ee:ff") {
		t.Errorf("plugin 3 prevResult = %s", prev2)
	}
	// Cache file in the reference's layout.
	path := cachePathOf(l, "net1", rt1)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("cache file mode %v", fi.Mode())
	}
	if di, _ := os.Stat(filepath.Dir(path)); di.Mode().Perm() != 0o700 {
		t.Errorf("results dir mode %v", di.Mode())
	}
	var ce map[string]any
	data, _ := os.ReadFile(path)
	json.Unmarshal(data, &ce)
	if ce["kind"] != "cniCacheV1" || ce["containerId"] != "c1" || ce["ifName"] != "eth0" || ce["networkName"] != "net1" ||
		ce["netns"] != "/var/run/netns/x" || ce["config"] == nil || ce["result"] == nil {
		t.Errorf("cache entry = %s", data)
	}
	if !reflect.DeepEqual(ce["cniArgs"], []any{[]any{"IgnoreUnknown", "1"}, []any{"K8S_POD_NAME", "p"}}) {
		t.Errorf("cniArgs = %v", ce["cniArgs"])
	}
	cached, err := c.GetNetworkListCachedResult(list, rt1)
	if err != nil || cached.Interfaces[0].Mac != "aa:bb:cc:dd:ee:ff" {
		t.Errorf("cached result = %+v, %v", cached, err)
	}

	if err := c.DelNetworkList(ctx, list, rt1); err != nil {
		t.Fatal(err)
	}
	recs = l.records()
	if len(recs) != 3 {
		t.Fatalf("%d DEL invocations", len(recs))
	}
	var first []byte
	for i, r := range recs {
		if r.Plugin != []string{"fake-c", "fake-b", "fake-a"}[i] || r.Command != "DEL" {
			t.Errorf("DEL %d = %s %s", i, r.Plugin, r.Command)
		}
		p, _ := json.Marshal(r.stdinMap(t)["prevResult"])
		if i == 0 {
			first = p
		} else if string(p) != string(first) {
			t.Errorf("DEL prevResults differ: %s vs %s", p, first)
		}
	}
	if !strings.Contains(string(first), "aa:bb:cc:dd:ee:ff") {
		t.Errorf("DEL prevResult = %s", first)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("cache not removed: %v", err)
	}
	// #4: DEL again succeeds, without prevResult.
	if err := c.DelNetworkList(ctx, list, rt1); err != nil {
		t.Fatal(err)
	}
	for _, r := range l.records() {
		if _, has := r.stdinMap(t)["prevResult"]; has {
			t.Errorf("second DEL got prevResult")
		}
	}
}

// #2: a failing plugin stops ADD, names the plugin, keeps the code; no cache.
func TestAddFailureStops(t *testing.T) {
	l := newLab(t, "fake-a", "fake-b", "fake-c")
	list := mkList(t, nil,
		l.plugin("fake-a", nil, nil),
		l.plugin("fake-b", map[string]fakeAction{"ADD": {ErrCode: 11, ErrMsg: "try later"}}, nil),
		l.plugin("fake-c", nil, nil))
	c := l.cni()
	_, err := c.AddNetworkList(context.Background(), list, rt1)
	if err == nil || !strings.HasPrefix(err.Error(), `plugin type="fake-b" failed (add): try later`) {
		t.Fatalf("error = %v", err)
	}
	var ce *cni.Error
	if !errors.As(err, &ce) || ce.Code != 11 {
		t.Errorf("code not reachable: %v", err)
	}
	if n := len(l.records()); n != 2 {
		t.Errorf("%d plugins ran, want 2", n)
	}
	if _, err := os.Stat(cachePathOf(l, "net1", rt1)); !os.IsNotExist(err) {
		t.Errorf("cache written after failed ADD")
	}
	if err := c.DelNetworkList(context.Background(), list, rt1); err != nil {
		t.Errorf("DEL after failed ADD: %v", err)
	}
}

// #5, #6: corrupt cache on DEL; failing DEL keeps the cache.
func TestDelCacheHandling(t *testing.T) {
	l := newLab(t, "fake-a", "fake-b")
	c := l.cni()
	ctx := context.Background()
	list := mkList(t, nil, l.plugin("fake-a", nil, nil), l.plugin("fake-b", nil, nil))
	path := cachePathOf(l, "net1", rt1)
	os.MkdirAll(filepath.Dir(path), 0o700)
	os.WriteFile(path, []byte(`{"kind":"cniCacheV1","result":{"cniVersion":"1.1.0","ips":[{"address":"garbage"}]}}`), 0o600)
	if err := c.DelNetworkList(ctx, list, rt1); err != nil {
		t.Fatalf("DEL with corrupt cache: %v", err)
	}
	for _, r := range l.records() {
		if _, has := r.stdinMap(t)["prevResult"]; has {
			t.Errorf("DEL with corrupt cache passed prevResult")
		}
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("corrupt cache not removed")
	}

	failing := mkList(t, nil, l.plugin("fake-a", map[string]fakeAction{"DEL": {ErrCode: 7, ErrMsg: "no"}}, nil), l.plugin("fake-b", nil, nil))
	if _, err := c.AddNetworkList(ctx, failing, rt1); err != nil {
		t.Fatal(err)
	}
	l.records()
	err := c.DelNetworkList(ctx, failing, rt1)
	if err == nil || !strings.Contains(err.Error(), `plugin type="fake-a" failed (delete): no`) || cni.Code(err) != 7 {
		t.Fatalf("failing DEL = %v", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("cache removed although DEL failed: %v", err)
	}
}

// #7, #8: CHECK gates.
func TestCheck(t *testing.T) {
	l := newLab(t, "fake-a", "fake-b")
	c := l.cni()
	ctx := context.Background()
	for _, dc := range []any{false, true, "true"} {
		old := mkList(t, map[string]any{"cniVersion": "0.3.1", "disableCheck": dc}, l.plugin("fake-a", nil, nil))
		if err := c.CheckNetworkList(ctx, old, rt1); err == nil || !strings.Contains(err.Error(), "does not support the CHECK command") {
			t.Errorf("CHECK on 0.3.1 (disableCheck=%v): %v", dc, err)
		}
	}
	for _, dc := range []any{true, "true", "TRUE"} {
		dis := mkList(t, map[string]any{"disableCheck": dc}, l.plugin("fake-a", nil, nil))
		if err := c.CheckNetworkList(ctx, dis, rt1); err != nil {
			t.Errorf("disableCheck %v: %v", dc, err)
		}
	}
	if n := len(l.records()); n != 0 {
		t.Fatalf("%d plugins ran although CHECK was refused/disabled", n)
	}
	list := mkList(t, nil, l.plugin("fake-a", nil, nil), l.plugin("fake-b", map[string]fakeAction{"CHECK": {ErrCode: 100, ErrMsg: "drift"}}, nil))
	if _, err := c.AddNetworkList(ctx, list, rt1); err != nil {
		t.Fatal(err)
	}
	l.records()
	err := c.CheckNetworkList(ctx, list, rt1)
	if cni.Code(err) != 100 {
		t.Fatalf("CHECK error = %v", err)
	}
	recs := l.records()
	if len(recs) != 2 || recs[0].Plugin != "fake-a" || recs[0].Command != "CHECK" {
		t.Fatalf("CHECK order: %+v", recs)
	}
	if _, has := recs[0].stdinMap(t)["prevResult"]; !has {
		t.Errorf("CHECK without prevResult")
	}
}

// #9, #10: runtimeConfig is the intersection, absent when empty.
func TestRuntimeConfig(t *testing.T) {
	l := newLab(t, "fake-a", "fake-b")
	caps := map[string]any{"a": "A", "b": []any{1.0}, "d": "D"}
	list := mkList(t, nil,
		l.plugin("fake-a", nil, map[string]any{"capabilities": map[string]bool{"a": true, "b": false, "c": true}}),
		l.plugin("fake-b", nil, map[string]any{"capabilities": map[string]bool{"x": true}, "runtimeConfig": map[string]any{"static": 1}}))
	rt := *rt1
	rt.CapabilityArgs = caps
	if _, err := l.cni().AddNetworkList(context.Background(), list, &rt); err != nil {
		t.Fatal(err)
	}
	recs := l.records()
	if got := recs[0].stdinMap(t)["runtimeConfig"]; !reflect.DeepEqual(got, map[string]any{"a": "A"}) {
		t.Errorf("runtimeConfig = %v", got)
	}
	if got := recs[1].stdinMap(t)["runtimeConfig"]; !reflect.DeepEqual(got, map[string]any{"static": 1.0}) {
		t.Errorf("static runtimeConfig not passed through: %v", got)
	}
	// The cache keeps every capability arg, unfiltered (as the reference).
	_, crt, err := l.cni().GetNetworkListCachedConfig(list, rt1)
	if err != nil || !reflect.DeepEqual(crt.CapabilityArgs, caps) || crt.NetNS != rt1.NetNS {
		t.Errorf("cached config rt = %+v, %v", crt, err)
	}
}

// #16, #18, #19: bad input is refused before any plugin runs.
func TestAddValidation(t *testing.T) {
	l := newLab(t, "fake-a")
	c := l.cni()
	ctx := context.Background()
	list := mkList(t, nil, l.plugin("fake-a", nil, nil))
	cases := []struct {
		rt   RuntimeConf
		code uint
	}{
		{RuntimeConf{ContainerID: "", IfName: "eth0"}, 3},
		{RuntimeConf{ContainerID: "-x", IfName: "eth0"}, 4},
		{RuntimeConf{ContainerID: "x%y", IfName: "eth0"}, 4},
		{RuntimeConf{ContainerID: "../../etc", IfName: "eth0"}, 4},
		{RuntimeConf{ContainerID: "c", IfName: ""}, 4},
		{RuntimeConf{ContainerID: "c", IfName: "."}, 4},
		{RuntimeConf{ContainerID: "c", IfName: ".."}, 4},
		{RuntimeConf{ContainerID: "c", IfName: "a b"}, 4},
		{RuntimeConf{ContainerID: "c", IfName: "a:b"}, 4},
		{RuntimeConf{ContainerID: "c", IfName: "a/b"}, 4},
		{RuntimeConf{ContainerID: "c", IfName: "0123456789abcdef"}, 4},
		{RuntimeConf{ContainerID: "c", IfName: "eth0", Args: [][2]string{{"a", "b;c"}}}, 4},
	}
	for _, tc := range cases {
		_, err := c.AddNetworkList(ctx, list, &tc.rt)
		if cni.Code(err) != tc.code || !strings.HasPrefix(err.Error(), `plugin type="fake-a" failed (add): `) {
			t.Errorf("%+v: %v (code %d, want %d)", tc.rt, err, cni.Code(err), tc.code)
		}
	}
	bad := mkList(t, map[string]any{"name": "net1"}, l.plugin("fake-a", nil, nil))
	bad.Name = "_n"
	if _, err := c.AddNetworkList(ctx, bad, rt1); cni.Code(err) != 7 {
		t.Errorf("network name _n: %v", err)
	}
	// A missing plugin anywhere in the list: nothing runs, lookup error first.
	missing := mkList(t, nil, l.plugin("fake-a", nil, nil), l.plugin("nothere", nil, nil))
	_, err := c.AddNetworkList(ctx, missing, &RuntimeConf{ContainerID: "-bad", IfName: "eth0"})
	if err == nil || !strings.Contains(err.Error(), `plugin type="nothere" failed (add): failed to find plugin "nothere"`) {
		t.Errorf("missing plugin: %v", err)
	}
	for _, typ := range []string{"../x", "a/b"} {
		if _, err := cni.ParsePluginConfig([]byte(`{"type":"` + typ + `"}`)); err == nil {
			t.Errorf("type %q accepted by the parser", typ)
		}
		hand := &cni.NetworkConfigList{Name: "net1", CNIVersion: "1.1.0", Plugins: []*cni.PluginConfig{{Network: cni.NetConf{Type: typ}, Bytes: []byte(`{"type":"` + typ + `"}`)}}}
		if _, err := c.AddNetworkList(ctx, hand, rt1); err == nil || !strings.Contains(err.Error(), "invalid plugin name") {
			t.Errorf("type %q: %v", typ, err)
		}
	}
	if n := len(l.records()); n != 0 {
		t.Errorf("%d plugins ran on bad input", n)
	}
	if entries, _ := os.ReadDir(filepath.Join(l.cacheDir, "results")); len(entries) != 0 {
		t.Errorf("cache written on bad input")
	}
}

// #17: the plugin is found in the second path; a same-named dir in the first is skipped.
func TestPluginPathSearch(t *testing.T) {
	l := newLab(t, "fake-a")
	first := t.TempDir()
	os.Mkdir(filepath.Join(first, "fake-a"), 0o755)
	c := New(Config{Paths: []string{first, l.pluginD}, CacheDir: l.cacheDir})
	list := mkList(t, nil, l.plugin("fake-a", nil, nil))
	if _, err := c.AddNetworkList(context.Background(), list, rt1); err != nil {
		t.Fatal(err)
	}
	if r := l.records(); len(r) != 1 || r[0].Env["CNI_PATH"] != first+":"+l.pluginD {
		t.Errorf("records = %+v", r)
	}
}

// #20, #21, #22, #23: plugin outputs.
func TestPluginOutputs(t *testing.T) {
	l := newLab(t, "fake-a")
	c := l.cni()
	ctx := context.Background()
	run := func(act fakeAction, version string) (*cni.Result, error) {
		list := mkList(t, map[string]any{"cniVersion": version}, l.plugin("fake-a", map[string]fakeAction{"ADD": act}, nil))
		return c.AddNetworkList(ctx, list, rt1)
	}
	_, err := run(fakeAction{ErrCode: 11, ErrMsg: "later"}, "1.1.0")
	var ce *cni.Error
	if !errors.As(err, &ce) || ce.Code != 11 || ce.Msg != "later" {
		t.Errorf("error JSON: %v", err)
	}
	_, err = run(fakeAction{Stderr: "kaboom", Exit: 1, Silent: true}, "1.1.0")
	if err == nil || !strings.Contains(err.Error(), `netplugin failed: "kaboom": exit status 1`) {
		t.Errorf("stderr-only failure: %v", err)
	}
	res, err := run(fakeAction{Stderr: "just logging\n"}, "1.1.0")
	if err != nil || len(res.IPs) != 1 {
		t.Errorf("stderr noise on success: %+v, %v", res, err)
	}
	res, err = run(fakeAction{Result: json.RawMessage(`{"ips":[{"version":"4","address":"10.0.0.9/8"}]}`)}, "0.4.0")
	if err != nil || res.CNIVersion != "0.4.0" {
		t.Errorf("versionless result: %+v, %v", res, err)
	}
	// The cached result is converted to the list version before use.
	cached, err := c.GetNetworkListCachedResult(mkList(t, map[string]any{"cniVersion": "1.0.0"}, l.plugin("fake-a", nil, nil)), rt1)
	if err != nil || cached.CNIVersion != "1.0.0" || cached.IPs[0].Address.String() != "10.0.0.9/8" {
		t.Errorf("converted cached result: %+v, %v", cached, err)
	}
}

// #24: a context timeout kills the plugin; no cache.
func TestAddTimeout(t *testing.T) {
	l := newLab(t, "fake-a")
	list := mkList(t, nil, l.plugin("fake-a", map[string]fakeAction{"ADD": {SleepMS: 20000}}, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := l.cni().AddNetworkList(ctx, list, rt1)
	if err == nil || !strings.Contains(err.Error(), "signal: killed") {
		t.Fatalf("timeout error = %v", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("plugin not killed promptly")
	}
	if _, err := os.Stat(cachePathOf(l, "net1", rt1)); !os.IsNotExist(err) {
		t.Errorf("cache written after timeout")
	}
}

// #25, #26: GC.
func TestGC(t *testing.T) {
	l := newLab(t, "fake-a", "fake-b")
	c := l.cni()
	ctx := context.Background()
	list := mkList(t, nil, l.plugin("fake-a", nil, nil), l.plugin("fake-b", map[string]fakeAction{"GC": {ErrCode: 100, ErrMsg: "gc b failed"}}, nil))
	other := mkList(t, map[string]any{"name": "net2"}, l.plugin("fake-a", nil, nil))
	a := &RuntimeConf{ContainerID: "ca", NetNS: "/nsa", IfName: "eth0"}
	b := &RuntimeConf{ContainerID: "cb", NetNS: "/nsb", IfName: "eth1", Args: [][2]string{{"K", "V"}}, CapabilityArgs: map[string]any{"mac": "m"}}
	for _, rt := range []*RuntimeConf{a, b} {
		if _, err := c.AddNetworkList(ctx, list, rt); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.AddNetworkList(ctx, other, b); err != nil {
		t.Fatal(err)
	}
	l.records()
	err := c.GCNetworkList(ctx, list, &GCArgs{ValidAttachments: []cni.GCAttachment{{ContainerID: "ca", IfName: "eth0"}}})
	if err == nil || !strings.Contains(err.Error(), "gc b failed") || cni.Code(err) != 100 {
		t.Fatalf("GC error = %v", err)
	}
	recs := l.records()
	var got []string
	for _, r := range recs {
		got = append(got, r.Plugin+" "+r.Command+" "+r.Env["CNI_CONTAINERID"])
	}
	want := []string{"fake-b DEL cb", "fake-a DEL cb", "fake-a GC ", "fake-b GC "}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("GC ran %q, want %q", got, want)
	}
	if recs[0].Env["CNI_NETNS"] != "/nsb" || recs[0].Env["CNI_ARGS"] != "K=V" || recs[0].Env["CNI_IFNAME"] != "eth1" {
		t.Errorf("stale DEL env = %v", recs[0].Env)
	}
	for _, r := range recs[2:] {
		m := r.stdinMap(t)
		va := []any{map[string]any{"containerID": "ca", "ifname": "eth0"}}
		if !reflect.DeepEqual(m["cni.dev/valid-attachments"], va) || !reflect.DeepEqual(m["cni.dev/attachments"], va) {
			t.Errorf("GC stdin = %s", r.Stdin)
		}
		if _, has := m["prevResult"]; has {
			t.Errorf("GC got prevResult")
		}
		for _, k := range []string{"CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS"} {
			if v, ok := r.Env[k]; !ok || v != "" {
				t.Errorf("GC env %s = %q, %v", k, v, ok)
			}
		}
	}
	atts, _ := c.GetCachedAttachments("")
	var left []string
	for _, a := range atts {
		left = append(left, a.NetworkName+"/"+a.ContainerID)
	}
	if !reflect.DeepEqual(left, []string{"net1/ca", "net2/cb"}) {
		t.Errorf("attachments after GC = %v", left)
	}

	// 1.0.0 list: stale DELs only.
	old := mkList(t, map[string]any{"cniVersion": "1.0.0"}, l.plugin("fake-a", nil, nil), l.plugin("fake-b", nil, nil))
	if err := c.GCNetworkList(ctx, old, &GCArgs{}); err != nil {
		t.Fatal(err)
	}
	got = nil
	for _, r := range l.records() {
		got = append(got, r.Plugin+" "+r.Command+" "+r.Env["CNI_CONTAINERID"])
	}
	if !reflect.DeepEqual(got, []string{"fake-b DEL ca", "fake-a DEL ca"}) {
		t.Errorf("GC on 1.0.0 ran %q", got)
	}
	// disableGC: nothing at all.
	dis := mkList(t, map[string]any{"name": "net2", "disableGC": "true"}, l.plugin("fake-a", nil, nil))
	if err := c.GCNetworkList(ctx, dis, nil); err != nil {
		t.Fatal(err)
	}
	if n := len(l.records()); n != 0 {
		t.Errorf("disableGC ran %d plugins", n)
	}
}

// #27: STATUS.
func TestStatus(t *testing.T) {
	l := newLab(t, "fake-a", "fake-b", "fake-c")
	c := l.cni()
	ctx := context.Background()
	list := mkList(t, nil, l.plugin("fake-a", nil, nil), l.plugin("fake-b", map[string]fakeAction{"STATUS": {ErrCode: 50, ErrMsg: "pool exhausted"}}, nil), l.plugin("fake-c", nil, nil))
	err := c.GetStatusNetworkList(ctx, list)
	ce, ok := err.(*cni.Error)
	if !ok || ce.Code != 50 || ce.Msg != "pool exhausted" {
		t.Fatalf("STATUS error = %#v", err)
	}
	recs := l.records()
	if len(recs) != 2 || recs[1].Plugin != "fake-b" {
		t.Fatalf("STATUS ran %+v", recs)
	}
	m := recs[0].stdinMap(t)
	if m["name"] != "net1" || m["cniVersion"] != "1.1.0" || m["prevResult"] != nil || m["runtimeConfig"] != nil {
		t.Errorf("STATUS stdin %s", recs[0].Stdin)
	}
	old := mkList(t, map[string]any{"cniVersion": "1.0.0"}, l.plugin("fake-b", map[string]fakeAction{"STATUS": {ErrCode: 50, ErrMsg: "x"}}, nil))
	if err := c.GetStatusNetworkList(ctx, old); err != nil || len(l.records()) != 0 {
		t.Errorf("STATUS on 1.0.0: %v", err)
	}
}

// #28 and ValidateNetworkList.
func TestVersionAndValidate(t *testing.T) {
	l := newLab(t, "fake-a", "fake-legacy", "fake-old")
	c := l.cni()
	ctx := context.Background()
	vi, err := c.GetVersionInfo(ctx, "fake-legacy")
	if err != nil || !reflect.DeepEqual(vi.SupportedVersions, []string{"0.1.0"}) {
		t.Errorf("legacy VERSION = %+v, %v", vi, err)
	}
	list := mkList(t, nil,
		l.plugin("fake-a", nil, map[string]any{"capabilities": map[string]bool{"portMappings": true, "mac": true, "off": false}}),
		l.plugin("fake-a", nil, map[string]any{"capabilities": map[string]bool{"mac": true}, "ipam": map[string]any{"type": "fake-a"}}))
	caps, err := c.ValidateNetworkList(ctx, list)
	if err != nil || !reflect.DeepEqual(caps, []string{"mac", "portMappings"}) {
		t.Errorf("ValidateNetworkList = %v, %v", caps, err)
	}
	bad := mkList(t, nil, l.plugin("fake-old", nil, nil), l.plugin("nothere", nil, nil), l.plugin("fake-a", nil, map[string]any{"ipam": map[string]any{"type": "noipam"}}))
	_, err = c.ValidateNetworkList(ctx, bad)
	for _, want := range []string{`plugin fake-old does not support config version "1.1.0"`, `failed to find plugin "nothere"`, `failed to find plugin "noipam"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ValidateNetworkList error %v lacks %q", err, want)
		}
	}
}

// Operations on one container never overlap; different containers may.
func TestSerialisation(t *testing.T) {
	l := newLab(t, "fake-a")
	c := l.cni()
	ctx := context.Background()
	list := mkList(t, nil, l.plugin("fake-a", map[string]fakeAction{"ADD": {SleepMS: 150}, "DEL": {SleepMS: 150}}, nil))
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			rt := &RuntimeConf{ContainerID: "same", IfName: []string{"eth0", "eth1", "eth2", "eth3"}[i]}
			if _, err := c.AddNetworkList(ctx, list, rt); err != nil {
				errs <- err
			}
			if err := c.DelNetworkList(ctx, list, rt); err != nil {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	recs := l.records()
	if len(recs) != 8 {
		t.Fatalf("%d records", len(recs))
	}
	for i, a := range recs {
		for _, b := range recs[i+1:] {
			if a.Start.Before(b.End) && b.Start.Before(a.End) {
				t.Errorf("overlap on one container: %s %s / %s %s", a.Command, a.Env["CNI_IFNAME"], b.Command, b.Env["CNI_IFNAME"])
			}
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(l.cacheDir, lockDirName)); len(entries) != 2 {
		t.Errorf("%d lock files, want 2 (gc and one container bucket)", len(entries))
	}
	// GC waits for a running ADD.
	slow := mkList(t, nil, l.plugin("fake-a", map[string]fakeAction{"ADD": {SleepMS: 400}}, nil))
	addErr := make(chan error, 1)
	go func() {
		_, err := c.AddNetworkList(ctx, slow, &RuntimeConf{ContainerID: "g", IfName: "eth0"})
		addErr <- err
	}()
	waitLockHeld(t, filepath.Join(l.cacheDir, lockDirName, "gc"), addErr)
	if err := c.GCNetworkList(ctx, slow, &GCArgs{ValidAttachments: []cni.GCAttachment{{ContainerID: "g", IfName: "eth0"}}}); err != nil {
		t.Fatal(err)
	}
	if err := <-addErr; err != nil {
		t.Fatal(err)
	}
	// The plugins' own clocks: GC's plugin started only after ADD's ended.
	var add, gc *record
	for _, r := range l.records() {
		switch r.Command {
		case "ADD":
			add = &r
		case "GC":
			gc = &r
		}
	}
	if add == nil || gc == nil {
		t.Fatalf("records lack ADD or GC: %+v %+v", add, gc)
	}
	if gc.Start.Before(add.End) {
		t.Errorf("GC's plugin started at %s, before the running ADD ended at %s", gc.Start, add.End)
	}
}

// waitLockHeld returns once someone holds the flock on path, which it
// learns by failing to take it exclusively; it fails the test should op
// finish first.
func waitLockHeld(t *testing.T, path string, op <-chan error) {
	t.Helper()
	for {
		if f, err := os.Open(path); err == nil {
			err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return
			}
		}
		select {
		case err := <-op:
			t.Fatalf("the operation ended (%v) before it was seen holding %s", err, path)
		case <-time.After(time.Millisecond):
		}
	}
}
