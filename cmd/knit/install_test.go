package main

import (
	"bytes"
	"crypto/sha512"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	refcreate "github.com/containernetworking/cni/pkg/types/create"

	"github.com/knit-cni/knit/internal/nstest"
)

// listTypes asks the built knit-plugin for its types.
func listTypes(t *testing.T) []string {
	t.Helper()
	_, plugins := binaries(t)
	out, err := exec.Command(filepath.Join(plugins, pluginBinary), "--list").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(out))
}

func TestInstall(t *testing.T) {
	e := newEnv(t)
	_, plugins := binaries(t)
	src := filepath.Join(plugins, pluginBinary)
	dir := filepath.Join(t.TempDir(), "bin")
	types := listTypes(t)

	r := e.ok("install", "--dir", dir, "--from", src)
	if !strings.Contains(r.stdout, "installed") || !strings.Contains(r.stdout, fmt.Sprintf("(%d new)", len(types))) {
		t.Fatalf("first install: %s", r)
	}
	assertInstalled(t, dir, src, types)

	// Idempotent: nothing changes the second time.
	r = e.ok("install", "--dir", dir, "--from", src)
	if !strings.Contains(r.stdout, "up to date") || !strings.Contains(r.stdout, "(0 new)") {
		t.Fatalf("second install: %s", r)
	}
	assertInstalled(t, dir, src, types)
	leftovers, _ := filepath.Glob(filepath.Join(dir, ".*"))
	if len(leftovers) != 0 {
		t.Fatalf("temporary files left: %v", leftovers)
	}

	// A file that is not knit's is kept unless --force.
	foreign := filepath.Join(dir, types[0])
	if err := os.Remove(foreign); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(foreign, []byte("#!/bin/sh\necho other\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	r = e.run("install", "--dir", dir, "--from", src)
	if r.code != 1 || !strings.Contains(r.stderr, "--force") || !strings.Contains(r.stderr, "not part of knit") {
		t.Fatalf("install over a foreign file: %s", r)
	}
	if data, _ := os.ReadFile(foreign); string(data) != "#!/bin/sh\necho other\n" {
		t.Fatalf("the foreign file was changed")
	}
	e.ok("install", "--dir", dir, "--from", src, "--force")
	assertInstalled(t, dir, src, types)

	// Only a knit-plugin build is installed.
	r = e.run("install", "--dir", filepath.Join(t.TempDir(), "x"), "--from", "/bin/true")
	if r.code != 1 || !strings.Contains(r.stderr, "not a knit-plugin binary") {
		t.Fatalf("install of /bin/true: %s", r)
	}

	// Found beside the knit executable when --from is not given.
	besideDir := t.TempDir()
	for _, f := range []string{e.knit, src} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(besideDir, filepath.Base(f)), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dir2 := filepath.Join(t.TempDir(), "bin")
	if out, err := exec.Command(filepath.Join(besideDir, "knit"), "install", "--dir", dir2).CombinedOutput(); err != nil {
		t.Fatalf("install without --from: %v\n%s", err, out)
	}
	assertInstalled(t, dir2, src, types)
}

func assertInstalled(t *testing.T, dir, src string, types []string) {
	t.Helper()
	want, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, pluginBinary)
	got, err := os.ReadFile(bin)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("%s is not a copy of %s (%v)", bin, src, err)
	}
	if fi, _ := os.Stat(bin); fi.Mode().Perm() != 0o755 {
		t.Fatalf("%s mode %v, want 0755", bin, fi.Mode())
	}
	for _, typ := range types {
		target, err := os.Readlink(filepath.Join(dir, typ))
		if err != nil || target != pluginBinary {
			t.Fatalf("%s: want a link to %s, got %q (%v)", typ, pluginBinary, target, err)
		}
	}
}

var (
	cnitoolOnce sync.Once
	cnitoolBin  string
	cnitoolErr  error
)

// cnitool builds the reference cnitool (a test-only oracle).
func cnitool(t *testing.T) string {
	t.Helper()
	cnitoolOnce.Do(func() {
		dir, err := os.MkdirTemp("", "knit-cnitool-")
		if err != nil {
			cnitoolErr = err
			return
		}
		cleanupDir = append(cleanupDir, dir)
		cnitoolBin = filepath.Join(dir, "cnitool")
		out, err := exec.Command("go", "build", "-o", cnitoolBin, "github.com/containernetworking/cni/cnitool").CombinedOutput()
		if err != nil {
			cnitoolErr = fmt.Errorf("building the reference cnitool: %v\n%s", err, out)
		}
	})
	if cnitoolErr != nil {
		t.Fatal(cnitoolErr)
	}
	return cnitoolBin
}

// TestInstallServesCnitool installs the plugins, then the reference cnitool
// runs ADD, CHECK and DEL with them at CNI 1.1.0 and 0.4.0, and knit reads
// the result cache cnitool wrote.
func TestInstallServesCnitool(t *testing.T) {
	e := newEnv(t)
	_, plugins := binaries(t)
	tool := cnitool(t)
	dir := filepath.Join(t.TempDir(), "bin")
	e.ok("install", "--dir", dir, "--from", filepath.Join(plugins, pluginBinary))
	have := map[string]bool{}
	for _, typ := range listTypes(t) {
		have[typ] = true
	}
	if !have["loopback"] {
		t.Skip("knit-plugin has no loopback plugin yet")
	}

	for _, chain := range []string{"loopback", "loopback+host-local"} {
		for _, version := range []string{"1.1.0", "0.4.0"} {
			t.Run(chain+"@"+version, func(t *testing.T) {
				plugins := []string{`{"type":"loopback"}`}
				if strings.Contains(chain, "host-local") {
					if !have["host-local"] {
						t.Skip("knit-plugin has no host-local plugin yet")
					}
					plugins = append(plugins, e.hostLocal("10.217.0.0/24"))
				}
				name := nstest.UniqueName("t")
				e.conflist(name, version, plugins...)
				ctr := nstest.New(t, "c")
				id := fmt.Sprintf("cnitool-%x", sha512.Sum512([]byte(ctr)))[:len("cnitool-")+20]
				cacheFile := filepath.Join("/var/lib/cni/results", name+"-"+id+"-eth0")
				t.Cleanup(func() { os.Remove(cacheFile) })

				out := e.cnitool(t, tool, dir, "add", name, ctr)
				res, err := refcreate.Create(version, []byte(out))
				if err != nil {
					t.Fatalf("the reference cannot parse the ADD result: %v\n%s", err, out)
				}
				if res.Version() != version {
					t.Fatalf("result version %s, want %s", res.Version(), version)
				}
				assertLoopbackUp(t, ctr)
				if have["host-local"] && strings.Contains(chain, "host-local") {
					var body struct {
						IPs []struct{ Address string } `json:"ips"`
					}
					_ = json.Unmarshal([]byte(out), &body)
					_, subnet, _ := net.ParseCIDR("10.217.0.0/24")
					found := false
					for _, ip := range body.IPs {
						a, _, err := net.ParseCIDR(ip.Address)
						found = found || (err == nil && subnet.Contains(a))
					}
					if !found {
						t.Fatalf("no address from 10.217.0.0/24 in %s", out)
					}
				}

				// knit reads what cnitool cached (the same layout).
				r := e.ok("--cache-dir", "/var/lib/cni", "ls", "--net", name, "-o", "json")
				var views []attachmentView
				if err := json.Unmarshal([]byte(r.stdout), &views); err != nil || len(views) != 1 ||
					views[0].ContainerID != id || views[0].NetNS != ctr {
					t.Fatalf("knit ls of cnitool's cache: %v %s", err, r.stdout)
				}

				e.cnitool(t, tool, dir, "check", name, ctr)
				e.cnitool(t, tool, dir, "del", name, ctr)
				if _, err := os.Stat(cacheFile); !os.IsNotExist(err) {
					t.Fatalf("cache file %s left after cnitool del (%v)", cacheFile, err)
				}
				assertNoReservations(t, e, name)
			})
		}
	}
}

// cnitool runs the reference cnitool in the host namespace with CNI_PATH
// set to dir only.
func (e *env) cnitool(t *testing.T, tool, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command(tool, args...)
	cmd.Env = append(os.Environ(), "NETCONFPATH="+e.conf, "CNI_PATH="+dir, "CNI_ARGS=", "CAP_ARGS=", "CNI_IFNAME=eth0")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	wait, err := startIn(e.host, cmd)
	if err != nil {
		t.Fatal(err)
	}
	if err := wait(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("cnitool %v: exit %d\n%s%s", args, ee.ExitCode(), out.String(), errb.String())
		}
		t.Fatal(err)
	}
	return out.String()
}
