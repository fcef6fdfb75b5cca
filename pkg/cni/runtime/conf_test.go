package runtime

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/knit-cni/knit/pkg/cni"
)

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func types(list *cni.NetworkConfigList) []string {
	var out []string
	for _, p := range list.Plugins {
		out = append(out, p.Network.Type)
	}
	return out
}

func TestConfFiles(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"9-b.conflist": "{}", "10-a.conflist": "{}", "x.conf": "{}", "y.CONFLIST": "{}", "z.conflist.bak": "{}"})
	os.Mkdir(filepath.Join(dir, "d.conflist"), 0o755)
	got, err := ConfFiles(dir, []string{".conflist"})
	want := []string{filepath.Join(dir, "10-a.conflist"), filepath.Join(dir, "9-b.conflist")}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("ConfFiles = %v, %v", got, err)
	}
	if got, err := ConfFiles(filepath.Join(dir, "missing"), []string{".conf"}); err != nil || got != nil {
		t.Errorf("missing dir = %v, %v", got, err)
	}
}

// #12, #13: conflist wins over a same-named .conf; the lexically first file wins.
func TestLoadConfListPrecedence(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"00-net.conf":       `{"cniVersion":"1.0.0","name":"net","type":"from-conf"}`,
		"20-net.conflist":   `{"cniVersion":"1.0.0","name":"net","plugins":[{"type":"second"}]}`,
		"10-net.conflist":   `{"cniVersion":"1.0.0","name":"net","plugins":[{"type":"first"}]}`,
		"30-only.json":      `{"cniVersion":"0.4.0","name":"only","type":"single","disableCheck":true}`,
		"40-other.conflist": `{"cniVersion":"1.1.0","name":"other","plugins":[{"type":"o"}]}`,
	})
	list, err := LoadConfList(dir, "net")
	if err != nil || !reflect.DeepEqual(types(list), []string{"first"}) {
		t.Fatalf("net = %v, %v", list, err)
	}
	if !strings.Contains(string(list.Bytes), `"first"`) {
		t.Errorf("Bytes = %s", list.Bytes)
	}
	only, err := LoadConfList(dir, "only")
	if err != nil || only.CNIVersion != "0.4.0" || !reflect.DeepEqual(types(only), []string{"single"}) || only.DisableCheck {
		t.Errorf("fallback .json = %+v, %v", only, err)
	}
	_, err = LoadConfList(dir, "nope")
	var nf NotFoundError
	if !errors.As(err, &nf) || err.Error() != `no net configuration with name "nope" in `+dir {
		t.Errorf("not found: %v", err)
	}
	all, err := LoadAllConfLists(dir)
	var names []string
	for _, l := range all {
		names = append(names, l.Name+":"+strings.Join(types(l), ","))
	}
	if err != nil || !reflect.DeepEqual(names, []string{"net:first", "other:o", "only:single"}) {
		t.Errorf("LoadAllConfLists = %v, %v", names, err)
	}

	empty := t.TempDir()
	var ncf NoConfigsFoundError
	if _, err := LoadConfList(empty, "x"); !errors.As(err, &ncf) {
		t.Errorf("empty dir: %v", err)
	}
	if _, err := LoadConfList(filepath.Join(empty, "missing"), "x"); !errors.As(err, &ncf) {
		t.Errorf("missing dir: %v", err)
	}
	onlyLists := t.TempDir()
	writeFiles(t, onlyLists, map[string]string{"a.conflist": `{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"t"}]}`})
	if _, err := LoadConfList(onlyLists, "b"); !errors.As(err, &nf) {
		t.Errorf("lists but no match: %v", err)
	}
}

// An unparsable earlier file aborts the lookup; listings report it and go on.
func TestLoadConfListBadFile(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"10-bad.conflist":  `{"name":"bad","plugins":[{"type":"../x"}]}`,
		"20-good.conflist": `{"cniVersion":"1.0.0","name":"good","plugins":[{"type":"t"}]}`,
	})
	if _, err := LoadConfList(dir, "good"); err == nil || !strings.Contains(err.Error(), "10-bad.conflist") {
		t.Errorf("bad earlier file: %v", err)
	}
	all, err := LoadAllConfLists(dir)
	if len(all) != 1 || all[0].Name != "good" || err == nil || !strings.Contains(err.Error(), "invalid plugin name") {
		t.Errorf("LoadAllConfLists = %v, %v", all, err)
	}
	// #16: "a/b" also refused.
	writeFiles(t, dir, map[string]string{"10-bad.conflist": `{"name":"bad","plugins":[{"type":"a/b"}]}`})
	if _, err := LoadConfList(dir, "good"); err == nil {
		t.Errorf("type a/b accepted")
	}
}

// #14, #15: plugins from the network's subdirectory.
func TestSubdirPlugins(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"a.conflist":         `{"cniVersion":"1.1.0","name":"merge","plugins":[{"type":"inline"}]}`,
		"b.conflist":         `{"cniVersion":"1.1.0","name":"inlined","loadOnlyInlinedPlugins":true,"plugins":[{"type":"inline"}]}`,
		"c.conflist":         `{"cniVersion":"1.1.0","name":"subonly"}`,
		"merge/20-y.conf":    `{"type":"sub2"}`,
		"merge/10-x.conf":    `{"type":"sub1"}`,
		"merge/ignored.json": `{"type":"nope"}`,
		"inlined/x.conf":     `{"type":"sub"}`,
		"subonly/x.conf":     `{"type":"s"}`,
	})
	list, err := LoadConfList(dir, "merge")
	if err != nil || !reflect.DeepEqual(types(list), []string{"inline", "sub1", "sub2"}) {
		t.Fatalf("merge = %v, %v", list, err)
	}
	if strings.Contains(string(list.Bytes), "sub1") {
		t.Errorf("Bytes include subdir plugins")
	}
	list, err = LoadConfList(dir, "inlined")
	if err != nil || !reflect.DeepEqual(types(list), []string{"inline"}) {
		t.Errorf("loadOnlyInlinedPlugins = %v, %v", list, err)
	}
	list, err = LoadConfList(dir, "subonly")
	if err != nil || !reflect.DeepEqual(types(list), []string{"s"}) {
		t.Errorf("plugins only from subdir = %v, %v", list, err)
	}

	bad := t.TempDir()
	writeFiles(t, bad, map[string]string{"a.conflist": `{"cniVersion":"1.1.0","name":"x","loadOnlyInlinedPlugins":true}`})
	if _, err := LoadConfList(bad, "x"); err == nil {
		t.Errorf("loadOnlyInlinedPlugins without plugins accepted")
	}
	none := t.TempDir()
	writeFiles(t, none, map[string]string{"a.conflist": `{"cniVersion":"1.1.0","name":"x"}`})
	if _, err := LoadConfList(none, "x"); err == nil || !strings.Contains(err.Error(), "no plugin configs found") {
		t.Errorf("list without any plugins: %v", err)
	}
	badSub := t.TempDir()
	writeFiles(t, badSub, map[string]string{"a.conflist": `{"cniVersion":"1.1.0","name":"x"}`, "x/p.conf": `{"notype":1}`})
	if _, err := LoadConfList(badSub, "x"); err == nil || !strings.Contains(err.Error(), "missing 'type'") {
		t.Errorf("subdir plugin without type: %v", err)
	}
}

func TestBuildPluginConfig(t *testing.T) {
	pc, err := cni.ParsePluginConfig([]byte(`{"type":"t","name":"own","cniVersion":"0.1.0","big":12345678901234567890,"s":"<&>","keep":{"a":[1,2]}}`))
	if err != nil {
		t.Fatal(err)
	}
	out, err := BuildPluginConfig(pc, "net", "1.1.0", map[string]any{"runtimeConfig": map[string]any{"mac": "m"}})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"big":12345678901234567890,"cniVersion":"1.1.0","keep":{"a":[1,2]},"name":"net","runtimeConfig":{"mac":"m"},"s":"<&>","type":"t"}`
	if string(out) != want {
		t.Errorf("BuildPluginConfig =\n%s\nwant\n%s", out, want)
	}
	if _, err := BuildPluginConfig(pc, "net", "1.1.0", map[string]any{"x": nil}); err == nil {
		t.Errorf("nil inject value accepted")
	}
}
