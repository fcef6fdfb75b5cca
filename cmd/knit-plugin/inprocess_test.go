package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/knit-cni/knit/internal/netns"
	"github.com/knit-cni/knit/internal/nstest"
)

// buildPlugins builds knit-plugin with its links for one test and removes
// it when the test ends. (The package's TestMain belongs to another test
// file, so nstest.Plugins' process-wide directory would be left behind.)
func buildPlugins(t *testing.T) string {
	t.Helper()
	dir, err := nstest.BuildPlugins()
	if err != nil {
		t.Fatalf("building plugins: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// runPlugin runs dir/typ with CNI_COMMAND=cmd inside the namespace host. With
// noexecPath set, the plugin runs in a private mount namespace in which
// noexecPath is a bind mount of dir that forbids exec: the plugin's own links
// there are the same files (same device and inode) but cannot be exec'd.
func runPlugin(t *testing.T, host, dir, typ, cmd, cniPath, noexecPath string, extraEnv []string, stdin []byte) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), nstest.ExecTimeout)
	defer cancel()
	var c *exec.Cmd
	if noexecPath != "" {
		c = exec.CommandContext(ctx, "unshare", "--mount", "--propagation", "private", "sh", "-ec",
			`mount --bind "$1" "$2"; mount -o remount,bind,noexec "$2"; exec "$1/$3"`, "sh", dir, noexecPath, typ)
	} else {
		c = exec.CommandContext(ctx, filepath.Join(dir, typ))
	}
	c.Env = append([]string{"PATH=" + os.Getenv("PATH"), "CNI_COMMAND=" + cmd, "CNI_PATH=" + cniPath,
		"CNI_CONTAINERID=h17ctr", "CNI_IFNAME=eth0"}, extraEnv...)
	c.Stdin = bytes.NewReader(stdin)
	var out, errOut bytes.Buffer
	c.Stdout, c.Stderr = &out, &errOut
	err := netns.Do(host, c.Run)
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running %s %s: %v", typ, cmd, err)
	}
	return out.String(), errOut.String(), code
}

var volatile = regexp.MustCompile(`"mac":\s*"[^"]*"|"veth[0-9a-f]+"`)

// TestInProcessDelegate builds the plugins once for both checks.
func TestInProcessDelegate(t *testing.T) {
	nstest.RequireRoot(t)
	plugins := buildPlugins(t)
	t.Run("bridge", func(t *testing.T) { testBridgeRunsKnitHostLocalInProcess(t, plugins) })
	t.Run("error", func(t *testing.T) { testInProcessDelegateErrorSameAsExec(t, plugins) })
}

// testBridgeRunsKnitHostLocalInProcess proves that bridge runs knit's own
// host-local without an exec, that someone else's host-local earlier on
// CNI_PATH is still exec'd, and that the results are the same both ways.
func testBridgeRunsKnitHostLocalInProcess(t *testing.T, plugins string) {
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("needs unshare(1) for a private mount namespace")
	}
	host, ctr := nstest.HostAndContainer(t, "h17ip")
	netnsEnv := "CNI_NETNS=" + ctr
	conf := func(dataDir string) []byte {
		return []byte(fmt.Sprintf(`{"cniVersion":"1.1.0","name":"h17net","type":"bridge","bridge":"h17br0","isGateway":true,
			"ipam":{"type":"host-local","subnet":"10.217.0.0/24","dataDir":%q}}`, dataDir))
	}
	const ip = "10.217.0.2"
	allocated := func(dataDir string) bool {
		_, err := os.Stat(filepath.Join(dataDir, "h17net", ip))
		return err == nil
	}

	// 1. Only knit's links, reachable only through a noexec mount: the ADD
	// can succeed only if host-local runs inside the bridge process.
	noexec := t.TempDir()
	data1 := t.TempDir()
	out, errOut, code := runPlugin(t, host, plugins, "bridge", "ADD", noexec, noexec, []string{netnsEnv}, conf(data1))
	if code != 0 {
		t.Fatalf("bridge ADD with in-process host-local: exit %d\n%s\n%s", code, out, errOut)
	}
	inProcess := volatile.ReplaceAllString(out, `"X"`)
	if !allocated(data1) {
		t.Fatalf("in-process host-local did not record %s in %s", ip, data1)
	}
	if out, errOut, code := runPlugin(t, host, plugins, "bridge", "DEL", noexec, noexec, []string{netnsEnv}, conf(data1)); code != 0 {
		t.Fatalf("bridge DEL with in-process host-local: exit %d\n%s\n%s", code, out, errOut)
	}
	if allocated(data1) {
		t.Fatalf("in-process host-local DEL did not release %s", ip)
	}

	// 2. The control: with in-process delegation off, the same setup must
	// fail because host-local cannot be exec'd — so step 1 did not exec it.
	data2 := t.TempDir()
	out, _, code = runPlugin(t, host, plugins, "bridge", "ADD", noexec, noexec, []string{netnsEnv, inProcessEnv + "=0"}, conf(data2))
	if code == 0 || !strings.Contains(out, "cannot execute plugin") {
		t.Fatalf("with %s=0 the noexec host-local must fail to run; got exit %d: %s", inProcessEnv, code, out)
	}
	if allocated(data2) {
		t.Fatal("failed ADD left an allocation")
	}

	// 3. Someone else's host-local first on CNI_PATH (a counting wrapper
	// around knit's): it is exec'd, and the result is the same.
	wrapDir := t.TempDir()
	counter := filepath.Join(wrapDir, "count")
	wrapper := fmt.Sprintf("#!/bin/sh\necho \"$CNI_COMMAND\" >> %s\nexec %s \"$@\"\n", counter, filepath.Join(plugins, "host-local"))
	if err := os.WriteFile(filepath.Join(wrapDir, "host-local"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	data3 := t.TempDir()
	path := wrapDir + string(os.PathListSeparator) + plugins
	out, errOut, code = runPlugin(t, host, plugins, "bridge", "ADD", path, "", []string{netnsEnv}, conf(data3))
	if code != 0 {
		t.Fatalf("bridge ADD with exec'd host-local: exit %d\n%s\n%s", code, out, errOut)
	}
	if got := volatile.ReplaceAllString(out, `"X"`); got != inProcess {
		t.Errorf("results differ:\nin-process: %s\nexec'd:     %s", inProcess, got)
	}
	var res struct{ IPs []struct{ Address string } }
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.IPs) != 1 || res.IPs[0].Address != ip+"/24" {
		t.Errorf("result %s: %v", out, err)
	}
	if out, errOut, code := runPlugin(t, host, plugins, "bridge", "DEL", path, "", []string{netnsEnv}, conf(data3)); code != 0 {
		t.Fatalf("bridge DEL with exec'd host-local: exit %d\n%s\n%s", code, out, errOut)
	}
	if b, err := os.ReadFile(counter); err != nil || string(b) != "ADD\nDEL\n" {
		t.Errorf("the foreign host-local must be exec'd once per command; its log: %q, %v", b, err)
	}
	if allocated(data3) {
		t.Fatal("exec'd host-local DEL did not release the address")
	}
}

// testInProcessDelegateErrorSameAsExec compares a failing delegate's error
// (bad IPAM config) in-process and exec'd.
func testInProcessDelegateErrorSameAsExec(t *testing.T, plugins string) {
	host, ctr := nstest.HostAndContainer(t, "h17ie")
	// Only host-local looks at dataDir: a regular file there fails it.
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	bad := []byte(fmt.Sprintf(`{"cniVersion":"1.1.0","name":"h17bad","type":"bridge","bridge":"h17br1",
		"ipam":{"type":"host-local","subnet":"10.218.0.0/24","dataDir":%q}}`, notDir))
	env := []string{"CNI_NETNS=" + ctr}
	start := time.Now()
	in, _, c1 := runPlugin(t, host, plugins, "bridge", "ADD", plugins, "", env, bad)
	ex, _, c2 := runPlugin(t, host, plugins, "bridge", "ADD", plugins, "", append(env, inProcessEnv+"=0"), bad)
	if c1 == 0 || c1 != c2 || in != ex || !strings.Contains(in, notDir) {
		t.Errorf("in-process: exit %d %s\nexec'd: exit %d %s", c1, in, c2, ex)
	}
	t.Logf("both runs took %v; the error: %s", time.Since(start), in)
}

// TestCanRunInProcess: a delegate is run in-process unless its process
// would be refused for running inside CNI_NETNS, judged on the calling
// thread (not /proc/self, which is the main thread).
func TestCanRunInProcess(t *testing.T) {
	nstest.RequireRoot(t)
	ctr := nstest.New(t, "h17cr")
	env := []string{"CNI_NETNS=" + ctr}
	if !canRunInProcess("host-local", env) {
		t.Error("host-local from the test's own namespace must run in-process")
	}
	if canRunInProcess("no-such-type", env) {
		t.Error("an unregistered type must be exec'd")
	}
	var inside, override bool
	if err := netns.Do(ctr, func() error {
		inside = canRunInProcess("host-local", env)
		override = canRunInProcess("host-local", append(env, "CNI_NETNS_OVERRIDE=true"))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if inside {
		t.Error("a delegate called from inside CNI_NETNS must be exec'd (and refused as before)")
	}
	if !override {
		t.Error("CNI_NETNS_OVERRIDE must allow it in-process")
	}
	if !canRunInProcess("host-local", []string{"CNI_NETNS=/nonexistent/ns"}) {
		t.Error("an unusable CNI_NETNS is the plugin's to report")
	}
}
