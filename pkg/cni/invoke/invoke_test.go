package invoke

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/knit-cni/knit/pkg/cni"
)

// script writes an executable shell script named name into dir.
func script(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFindInPath(t *testing.T) {
	d1, d2 := t.TempDir(), t.TempDir()
	// A directory named like the plugin in the first dir is skipped.
	if err := os.Mkdir(filepath.Join(d1, "p"), 0o755); err != nil {
		t.Fatal(err)
	}
	want := script(t, d2, "p", "exit 0\n")
	got, err := FindInPath("p", []string{d1, d2})
	if err != nil || got != want {
		t.Fatalf("FindInPath = %q, %v; want %q", got, err, want)
	}
	// A symlink to a regular file counts.
	if err := os.Symlink(want, filepath.Join(d1, "q")); err != nil {
		t.Fatal(err)
	}
	if got, err := FindInPath("q", []string{d1, d2}); err != nil || got != filepath.Join(d1, "q") {
		t.Fatalf("symlink: %q, %v", got, err)
	}
	for _, bad := range []string{"", "/", "../p", "a/b", `a\b`, ".", ".."} {
		if _, err := FindInPath(bad, []string{d1, d2}); err == nil {
			t.Errorf("FindInPath(%q) succeeded", bad)
		}
	}
	_, err = FindInPath("missing", []string{d1, d2})
	if err == nil || !strings.Contains(err.Error(), `failed to find plugin "missing" in path [`+d1+" "+d2+"]") {
		t.Fatalf("not found error = %v", err)
	}
	if cni.Code(err) != cni.ErrPluginNotAvailable {
		t.Errorf("not found code = %d", cni.Code(err))
	}
	if _, err := FindInPath("p", nil); err == nil || !strings.Contains(err.Error(), "no paths provided") {
		t.Errorf("no paths: %v", err)
	}
}

func TestArgsEnv(t *testing.T) {
	t.Setenv("CNI_COMMAND", "inherited")
	t.Setenv("CNI_NETNS", "inherited")
	t.Setenv("KNIT_TEST_KEEP", "yes")
	a := &Args{Command: "ADD", ContainerID: "c1", IfName: "eth0", PluginArgs: [][2]string{{"A", "1"}, {"B", "2"}}, Path: "/x:/y"}
	env := a.AsEnv()
	got := map[string][]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		got[k] = append(got[k], v)
	}
	want := map[string]string{"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "", "CNI_ARGS": "A=1;B=2",
		"CNI_IFNAME": "eth0", "CNI_PATH": "/x:/y", "KNIT_TEST_KEEP": "yes"}
	for k, v := range want {
		if len(got[k]) != 1 || got[k][0] != v {
			t.Errorf("%s = %q, want exactly [%q]", k, got[k], v)
		}
	}
	a.PluginArgsStr = "RAW=1"
	if e := strings.Join(a.AsEnv(), "\n"); !strings.Contains(e, "\nCNI_ARGS=RAW=1\n") {
		t.Errorf("PluginArgsStr not used")
	}
	d := DelegateEnv("DEL")
	n := 0
	for _, kv := range d {
		if strings.HasPrefix(kv, "CNI_COMMAND=") {
			n++
			if kv != "CNI_COMMAND=DEL" {
				t.Errorf("delegate command %q", kv)
			}
		}
		if kv == "CNI_NETNS=inherited" {
			n += 10
		}
	}
	if n != 11 {
		t.Errorf("DelegateEnv must override CNI_COMMAND once and keep the rest (n=%d)", n)
	}
}

func TestRawExecFailureMapping(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	cases := []struct {
		name, body, want string
		code             uint
	}{
		{"json", `echo '{"code":11,"msg":"busy","details":"later"}'; echo noise >&2; exit 1`, "busy; later", 11},
		{"stderr", `echo "it broke" >&2; exit 3`, `netplugin failed: "it broke\n": exit status 3`, 0},
		{"nothing", `exit 2`, "netplugin failed with no error message: exit status 2", 0},
		{"badjson", `echo 'oops'; exit 1`, `netplugin failed but error parsing its diagnostic message "oops\n": invalid character 'o'`, 0},
	}
	for _, c := range cases {
		p := script(t, dir, c.name, c.body)
		_, err := (&RawExec{}).ExecPlugin(ctx, p, nil, nil)
		var ce *cni.Error
		if !errors.As(err, &ce) {
			t.Fatalf("%s: error %v is not a *cni.Error", c.name, err)
		}
		if !strings.HasPrefix(err.Error(), c.want) || ce.Code != c.code {
			t.Errorf("%s: got %q code %d, want prefix %q code %d", c.name, err, ce.Code, c.want, c.code)
		}
	}
}

func TestRawExecSuccess(t *testing.T) {
	dir := t.TempDir()
	p := script(t, dir, "ok", `cat; echo "log line" >&2; echo "env=$FOO"`)
	var stderr bytes.Buffer
	out, err := (&RawExec{Stderr: &stderr}).ExecPlugin(context.Background(), p, []byte("IN\n"), []string{"FOO=bar"})
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "IN\nenv=bar\n" {
		t.Errorf("stdout = %q", out)
	}
	if stderr.String() != "log line\n" {
		t.Errorf("stderr forwarded = %q", stderr.String())
	}
	// Not executable: clear error, not a crash.
	np := filepath.Join(dir, "noexec")
	os.WriteFile(np, []byte("x"), 0o644)
	if _, err := (&RawExec{}).ExecPlugin(context.Background(), np, nil, nil); err == nil || !strings.Contains(err.Error(), "cannot execute plugin") {
		t.Errorf("non-executable: %v", err)
	}
}

func TestRawExecTimeoutKills(t *testing.T) {
	dir := t.TempDir()
	p := script(t, dir, "slow", "exec sleep 30\n")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := (&RawExec{}).ExecPlugin(ctx, p, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "netplugin failed with no error message: signal: killed") {
		t.Fatalf("timeout error = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("plugin not killed promptly: %v", d)
	}
}

func TestExecPluginWithResult(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	noVer := script(t, dir, "nover", `echo '{"ips":[{"address":"10.1.0.2/24"}]}'`)
	res, err := ExecPluginWithResult(ctx, noVer, []byte(`{"cniVersion":"0.4.0","name":"n","type":"nover"}`), &Args{Command: "ADD"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.CNIVersion != "0.4.0" || len(res.IPs) != 1 || res.IPs[0].Address.String() != "10.1.0.2/24" {
		t.Errorf("result = %+v", res)
	}
	null := script(t, dir, "null", `echo null`)
	res, err = ExecPluginWithResult(ctx, null, []byte(`{"cniVersion":"1.1.0","name":"n","type":"null"}`), &Args{Command: "ADD"}, nil)
	if err != nil || res.CNIVersion != "1.1.0" || len(res.IPs) != 0 {
		t.Errorf("null result = %+v, %v", res, err)
	}
	empty := script(t, dir, "empty", `exit 0`)
	if _, err = ExecPluginWithResult(ctx, empty, []byte(`{"cniVersion":"1.1.0"}`), &Args{Command: "ADD"}, nil); err == nil {
		t.Error("empty stdout on ADD accepted")
	}
}

func TestGetVersionInfo(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	modern := script(t, dir, "modern", `cat > "$0.stdin"; env > "$0.env"; echo '{"cniVersion":"1.1.0","supportedVersions":["0.4.0","1.0.0"]}'`)
	vi, err := GetVersionInfo(ctx, modern, nil)
	if err != nil || !vi.Supports("1.0.0") || vi.Supports("1.1.0") {
		t.Fatalf("version info = %+v, %v", vi, err)
	}
	stdin, _ := os.ReadFile(modern + ".stdin")
	if string(stdin) != `{"cniVersion":"1.1.0"}` {
		t.Errorf("VERSION stdin = %q", stdin)
	}
	env, _ := os.ReadFile(modern + ".env")
	for _, want := range []string{"CNI_COMMAND=VERSION", "CNI_NETNS=dummy", "CNI_IFNAME=dummy", "CNI_PATH=dummy"} {
		if !strings.Contains(string(env), want+"\n") {
			t.Errorf("VERSION env lacks %s", want)
		}
	}
	legacy := script(t, dir, "legacy", `echo '{"code":4,"msg":"unknown CNI_COMMAND: VERSION"}'; exit 1`)
	vi, err = GetVersionInfo(ctx, legacy, nil)
	if err != nil || len(vi.SupportedVersions) != 1 || vi.SupportedVersions[0] != "0.1.0" {
		t.Errorf("legacy = %+v, %v", vi, err)
	}
	broken := script(t, dir, "broken", `echo '{"code":7,"msg":"nope"}'; exit 1`)
	if _, err = GetVersionInfo(ctx, broken, nil); cni.Code(err) != 7 {
		t.Errorf("broken VERSION error = %v", err)
	}
}

func TestDelegate(t *testing.T) {
	dir := t.TempDir()
	script(t, dir, "ipam", `cat > "$0.stdin"; env > "$0.env"; [ "$CNI_COMMAND" = ADD ] && echo '{"ips":[{"address":"10.9.0.5/16"}]}'; exit 0`)
	t.Setenv("CNI_PATH", t.TempDir()+string(filepath.ListSeparator)+dir)
	t.Setenv("CNI_COMMAND", "ADD")
	t.Setenv("CNI_CONTAINERID", "ctr")
	conf := []byte(`{"cniVersion":"1.0.0","name":"n","type":"bridge","ipam":{"type":"ipam"}}`)
	ctx := context.Background()
	res, err := DelegateAdd(ctx, "ipam", conf, nil)
	if err != nil || res.CNIVersion != "1.0.0" || len(res.IPs) != 1 {
		t.Fatalf("DelegateAdd = %+v, %v", res, err)
	}
	stdin, _ := os.ReadFile(filepath.Join(dir, "ipam.stdin"))
	if !bytes.Equal(stdin, conf) {
		t.Errorf("delegate stdin = %s", stdin)
	}
	for cmd, f := range map[string]func(context.Context, string, []byte, Exec) error{
		"DEL": DelegateDel, "CHECK": DelegateCheck, "GC": DelegateGC, "STATUS": DelegateStatus,
	} {
		if err := f(ctx, "ipam", conf, nil); err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
		env, _ := os.ReadFile(filepath.Join(dir, "ipam.env"))
		if !strings.Contains(string(env), "CNI_COMMAND="+cmd+"\n") || !strings.Contains(string(env), "CNI_CONTAINERID=ctr\n") {
			t.Errorf("%s env wrong:\n%s", cmd, env)
		}
	}
	if _, err := DelegateAdd(ctx, "nothere", conf, nil); err == nil || !strings.Contains(err.Error(), `failed to find plugin "nothere"`) {
		t.Errorf("missing delegate: %v", err)
	}
}
