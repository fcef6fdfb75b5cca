package hostlocal

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/knit-cni/knit/pkg/cni"
	"github.com/knit-cni/knit/pkg/cni/skel"
	"github.com/knit-cni/knit/plugins/ipam/hostlocal/store"
)

// asPluginEnv makes the test binary act as the plugin: tests exec
// os.Args[0] with it set, so concurrency and interop run real processes
// without depending on the rest of cmd/knit-plugin building.
const asPluginEnv = "KNIT_TEST_RUN_AS_HOST_LOCAL"

// stepDelayEnv (microseconds) makes the child sleep up to that long at each
// store step.
const stepDelayEnv = "KNIT_TEST_HOST_LOCAL_STEP_DELAY_US"

func TestMain(m *testing.M) {
	if os.Getenv(asPluginEnv) == "1" {
		if us, _ := strconv.Atoi(os.Getenv(stepDelayEnv)); us > 0 {
			// Fault injection: widen the window between store steps so
			// SIGKILLs land inside ADD, not only in process start-up.
			store.StepHook = func(string) { time.Sleep(time.Duration(rand.IntN(us)) * time.Microsecond) }
		}
		skel.Main(Plugin, Info)
	}
	os.Exit(m.Run())
}

// call is one plugin invocation.
type call struct {
	cmd, cid, ifname, args string
	conf                   string
}

type outcome struct {
	res  *cni.Result
	err  *cni.Error
	code int
	raw  string
}

func (o outcome) addrs() []string {
	var out []string
	if o.res != nil {
		for _, ip := range o.res.IPs {
			out = append(out, ip.Address.String())
		}
	}
	return out
}

func decode(t testing.TB, code int, stdout []byte) outcome {
	t.Helper()
	o := outcome{code: code, raw: string(stdout)}
	if code != 0 {
		var e cni.Error
		if err := json.Unmarshal(stdout, &e); err != nil {
			t.Fatalf("plugin failed with undecodable output %q", stdout)
		}
		o.err = &e
		return o
	}
	if len(bytes.TrimSpace(stdout)) > 0 {
		r, err := cni.ParseResult(stdout, "")
		if err != nil {
			t.Fatalf("bad result %q: %v", stdout, err)
		}
		o.res = r
	}
	return o
}

func envFor(c call) map[string]string {
	if c.cid == "" {
		c.cid = "ctr"
	}
	if c.ifname == "" {
		c.ifname = "eth0"
	}
	return map[string]string{
		"CNI_COMMAND":     c.cmd,
		"CNI_CONTAINERID": c.cid,
		"CNI_NETNS":       "/var/run/netns/knit-test-not-used",
		"CNI_IFNAME":      c.ifname,
		"CNI_ARGS":        c.args,
		"CNI_PATH":        "/nonexistent",
	}
}

// run invokes the plugin in-process through skel.
func run(t testing.TB, c call) outcome {
	t.Helper()
	env := envFor(c)
	var stdout, stderr bytes.Buffer
	code := skel.Execute(context.Background(), Plugin, Info, skel.IO{
		Getenv:  func(k string) string { return env[k] },
		Environ: func() []string { return nil },
		Stdin:   strings.NewReader(c.conf),
		Stdout:  &stdout,
		Stderr:  &stderr,
	})
	return decode(t, code, stdout.Bytes())
}

// runBinary execs bin (or this test binary as the plugin when bin is "").
func runBinary(t testing.TB, bin string, c call) outcome {
	t.Helper()
	environ := []string{"PATH=/usr/bin:/bin"}
	if bin == "" {
		bin = os.Args[0]
		// A race-enabled child otherwise sleeps a second at exit.
		environ = append(environ, asPluginEnv+"=1", "GORACE=atexit_sleep_ms=0")
	}
	for k, v := range envFor(c) {
		environ = append(environ, k+"="+v)
	}
	cmd := exec.Command(bin)
	cmd.Env = environ
	cmd.Stdin = strings.NewReader(c.conf)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("exec %s: %v", bin, err)
		}
		code = ee.ExitCode()
	}
	return decode(t, code, stdout.Bytes())
}

func mustOK(t testing.TB, o outcome) outcome {
	t.Helper()
	if o.code != 0 {
		t.Fatalf("plugin failed: %s", o.raw)
	}
	return o
}

func mustFail(t testing.TB, o outcome, code uint, substr string) {
	t.Helper()
	if o.code == 0 {
		t.Fatalf("plugin succeeded, want error code %d containing %q: %s", code, substr, o.raw)
	}
	if o.err.Code != code || !strings.Contains(o.err.Error(), substr) {
		t.Fatalf("got error %d %q, want code %d containing %q", o.err.Code, o.err.Error(), code, substr)
	}
}

// netConf builds a config; ipam is the JSON of the ipam keys after "type".
func netConf(version, dataDir, ipam string, extra ...string) string {
	s := fmt.Sprintf(`{"cniVersion":%q,"name":"testnet","type":"bridge","ipam":{"type":"host-local","dataDir":%q`, version, dataDir)
	if ipam != "" {
		s += "," + ipam
	}
	s += "}"
	for _, e := range extra {
		s += "," + e
	}
	return s + "}"
}

// listDir returns the sorted names in dir (missing dir: nil).
func listDir(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

// allocations maps every address file in dataDir/testnet to its content.
func allocations(t testing.TB, dataDir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	dir := filepath.Join(dataDir, "testnet")
	for _, n := range listDir(t, dir) {
		if fi, err := os.Stat(filepath.Join(dir, n)); n == "lock" || strings.HasPrefix(n, "last_reserved_ip.") || err == nil && fi.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		out[n] = string(b)
	}
	return out
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// hintNames lists the owner hints of dataDir's testnet (without boot_id).
// ownerEntries lists the owner index: entry name → symlink target.
func ownerEntries(t testing.TB, dataDir string) map[string]string {
	t.Helper()
	dir := filepath.Join(dataDir, ".knit", "testnet", store.OwnersDir)
	out := map[string]string{}
	ents, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return out
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = target
	}
	return out
}

func hintNames(t testing.TB, dataDir string) []string {
	t.Helper()
	var out []string
	for _, n := range listDir(t, filepath.Join(dataDir, ".knit", "testnet")) {
		if n != "boot_id" && n != store.OwnersDir && n != store.StateFile {
			out = append(out, n)
		}
	}
	return out
}
