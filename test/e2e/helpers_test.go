package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// cmdTimeout bounds every command a test runs.
const cmdTimeout = 90 * time.Second

// output runs a command with extra environment and returns its combined
// output.
func output(env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// run runs a command and fails the test if it fails.
func run(t testing.TB, env []string, name string, args ...string) string {
	t.Helper()
	out, err := output(env, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func binPath(name string) string { return filepath.Join(os.Getenv(envBin), name) }

// knit runs the knit CLI with its defaults: /etc/cni/net.d, /opt/cni/bin
// and /var/lib/cni, the same (private) directories the runtimes use.
func knit(t testing.TB, args ...string) string {
	t.Helper()
	return run(t, nil, binPath("knit"), args...)
}

// eventually retries f until it succeeds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %s: %v", what, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

var (
	typesOnce sync.Once
	types     []string
)

// pluginTypes lists the plugin types knit-plugin and knit-plugin-extra
// provide together.
func pluginTypes(t testing.TB) []string {
	typesOnce.Do(func() {
		for _, bin := range []string{"knit-plugin", "knit-plugin-extra"} {
			out, err := output(nil, binPath(bin), "--list")
			if err != nil {
				t.Fatal(err)
			}
			types = append(types, strings.Fields(out)...)
		}
		slices.Sort(types)
		types = slices.Compact(types)
	})
	return types
}

func hasPlugin(t testing.TB, typ string) bool { return slices.Contains(pluginTypes(t), typ) }

// writeJSON writes v as JSON to path.
func writeJSON(t testing.TB, path string, v any) {
	t.Helper()
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func scratch(elem ...string) string {
	return filepath.Join(append([]string{os.Getenv(envScratch)}, elem...)...)
}

var (
	rootfsOnce sync.Once
	rootfsErr  error
)

// rootfs builds a busybox root file system in scratch and returns its path.
func rootfs(t testing.TB) string {
	t.Helper()
	dir := scratch("rootfs")
	rootfsOnce.Do(func() { rootfsErr = buildRootfs(dir) })
	if rootfsErr != nil {
		t.Fatal(rootfsErr)
	}
	return dir
}

func buildRootfs(dir string) error {
	for _, d := range []string{"bin", "etc", "proc", "sys", "dev", "tmp", "root", "www"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	bb, err := exec.LookPath("busybox")
	if err != nil {
		return err
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "busybox"), data, 0o755); err != nil {
		return err
	}
	out, err := exec.Command(bb, "--list").Output()
	if err != nil {
		return fmt.Errorf("busybox --list: %w", err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", applet)); err != nil {
			return err
		}
	}
	files := map[string]string{
		"etc/passwd":     "root:x:0:0:root:/root:/bin/sh\n",
		"etc/group":      "root:x:0:\n",
		"www/index.html": "served by " + marker + "\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// ignoreENOENT treats a missing file as success.
func ignoreENOENT(err error) error {
	if err == nil || os.IsNotExist(err) || err == unix.ENOENT {
		return nil
	}
	return err
}

// ipNetns runs ip inside the named namespace (ip -n).
func ipNetns(t testing.TB, ns string, args ...string) string {
	t.Helper()
	return run(t, nil, "ip", append([]string{"-n", ns}, args...)...)
}

// links lists the link names in the sandbox (the "host") namespace.
func links(t testing.TB) []string {
	t.Helper()
	var names []string
	for _, l := range strings.Split(run(t, nil, "ip", "-br", "link"), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			name, _, _ := strings.Cut(f[0], "@")
			names = append(names, name)
		}
	}
	return names
}

// cacheFiles lists the result-cache files of network net.
func cacheFiles(t testing.TB, net string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join("/var/lib/cni/results", net+"-*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// leasedIPs lists the addresses host-local has reserved in network net.
func leasedIPs(t testing.TB, net string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join("/var/lib/cni/networks", net))
	if ignoreENOENT(err) != nil {
		t.Fatal(err)
	}
	var ips []string
	for _, e := range entries {
		if strings.Count(e.Name(), ".") == 3 || strings.Contains(e.Name(), ":") {
			ips = append(ips, e.Name())
		}
	}
	return ips
}

// lsEntry is one `knit ls -o json` row.
type lsEntry struct {
	Network     string   `json:"network"`
	ContainerID string   `json:"containerID"`
	IfName      string   `json:"ifName"`
	NetNS       string   `json:"netns"`
	Addresses   []string `json:"addresses"`
}

// knitLs returns the attachments knit ls shows for network net.
func knitLs(t testing.TB, net string) []lsEntry {
	t.Helper()
	var out []lsEntry
	if err := json.Unmarshal([]byte(knit(t, "ls", "--net", net, "-o", "json")), &out); err != nil {
		t.Fatalf("knit ls -o json: %v", err)
	}
	return out
}

// nftRuleset returns the sandbox's nftables ruleset.
func nftRuleset(t testing.TB) string {
	t.Helper()
	return run(t, nil, "nft", "list", "ruleset")
}
