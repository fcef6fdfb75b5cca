package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Environment of the two modes. KNIT_E2E=1 turns the tests on; the outer
// process sets the others for the sandboxed one.
const (
	envEnable  = "KNIT_E2E"
	envInside  = "KNIT_E2E_INSIDE"  // "1" in the sandboxed test binary
	envBin     = "KNIT_E2E_BIN"     // directory holding knit, knit-plugin(-extra), cnitool
	envScratch = "KNIT_E2E_SCRATCH" // scratch directory, a tmpfs inside the sandbox
)

// Names every test uses start with marker, so the host-state check can tell
// our leftovers from other people's.
const marker = "knite2e"

// pluginDir is where `knit install` puts the plugins inside the sandbox:
// ctr only looks there, and Podman is pointed at it alone.
const pluginDir = "/opt/cni/bin"

// tools the tests need, with the Debian package providing each.
var tools = map[string]string{
	"podman": "podman", "runc": "runc", "containerd": "containerd", "ctr": "containerd",
	"catatonit": "catatonit", "unshare": "util-linux", "busybox": "busybox-static",
	"ip": "iproute2", "nft": "nftables", "tar": "tar",
}

func TestMain(m *testing.M) {
	switch {
	case os.Getenv(envEnable) != "1":
		fmt.Println("e2e: skipped: set KNIT_E2E=1 (or run `make e2e`, which installs podman, runc, containerd and busybox-static and runs them for real)")
		os.Exit(m.Run()) // every test skips itself
	case os.Getenv(envInside) == "1":
		os.Exit(inside(m))
	default:
		os.Exit(outside())
	}
}

// enabled skips t unless it runs inside the sandbox.
func enabled(t *testing.T) {
	t.Helper()
	if os.Getenv(envInside) != "1" {
		t.Skip("end-to-end test: runs only with KNIT_E2E=1 (make e2e)")
	}
}

// outside builds the binaries, snapshots the machine, runs this test binary
// again inside the sandbox, and checks the machine is as it was.
func outside() int {
	start := time.Now()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "e2e: must run as root (it starts podman and containerd)")
		return 1
	}
	var missing []string
	for tool, pkg := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, fmt.Sprintf("%s (package %s)", tool, pkg))
		}
	}
	if len(missing) > 0 {
		fmt.Fprintf(os.Stderr, "e2e: missing %s: run `make e2e`, which installs them\n", strings.Join(missing, ", "))
		return 1
	}
	// What a killed run leaves outside the sandbox: empty cgroups (rmdir
	// fails on any in use) and its build directory.
	removeNewCgroups(nil)
	removeStaleWork(15 * time.Minute)
	work, err := os.MkdirTemp("", marker+"-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(work)
	bin := filepath.Join(work, "bin")
	scratch := filepath.Join(work, "scratch")
	if err := os.MkdirAll(scratch, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	if err := buildBinaries(bin); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	fmt.Printf("e2e: built knit, knit-plugin and cnitool in %.1fs\n", time.Since(start).Seconds())

	before, err := takeSnapshot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: snapshot before:", err)
		return 1
	}
	cgBefore := cgroupDirs()

	// --kill-child: if this process dies, unshare dies, and with it the
	// namespace's init, which makes the kernel end everything inside.
	args := append([]string{"--mount", "--net", "--pid", "--fork", "--mount-proc",
		"--propagation", "private", "--kill-child", "catatonit", "--", os.Args[0]}, os.Args[1:]...)
	cmd := exec.Command("unshare", args...)
	cmd.Env = append(os.Environ(), envInside+"=1", envBin+"="+bin, envScratch+"="+scratch)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	code := 0
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			fmt.Fprintln(os.Stderr, "e2e: running the sandbox:", err)
			return 1
		}
		code = ee.ExitCode()
		if code <= 0 {
			code = 1
		}
	}

	removeNewCgroups(cgBefore)
	after, err := takeSnapshot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: snapshot after:", err)
		return 1
	}
	if diff := before.diff(after); len(diff) > 0 {
		fmt.Println("--- FAIL: host state changed by the e2e run:")
		for _, d := range diff {
			fmt.Println("    " + d)
		}
		code = 1
	} else {
		fmt.Println("e2e: root network namespace, /etc/cni, /etc/containers, /opt, /var/lib/cni, /var/lib/containers and /run are as they were")
	}
	fmt.Printf("e2e: total %.1fs\n", time.Since(start).Seconds())
	if code != 0 {
		fmt.Println("FAIL")
	}
	return code
}

// removeStaleWork removes work directories of earlier runs older than age
// (longer than a run may last, so none is in use).
func removeStaleWork(age time.Duration) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), marker+"-*"))
	for _, d := range dirs {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() && time.Since(fi.ModTime()) > age {
			_ = os.RemoveAll(d)
		}
	}
}

// buildBinaries builds knit, the two plugin binaries as `make build` does
// (knit-plugin with the common plugins, knit-plugin-extra with the rest;
// `knit install` installs both) and the reference cnitool into dir.
func buildBinaries(dir string) error {
	root, err := filepath.Abs("../..")
	if err != nil {
		return err
	}
	builds := [][]string{
		{"build", "-o", filepath.Join(dir, "knit"), "./cmd/knit"},
		{"build", "-trimpath", "-ldflags=-s -w", "-tags", "knit_core", "-o", filepath.Join(dir, "knit-plugin"), "./cmd/knit-plugin"},
		{"build", "-trimpath", "-ldflags=-s -w", "-tags", "knit_extra", "-o", filepath.Join(dir, "knit-plugin-extra"), "./cmd/knit-plugin"},
		{"build", "-o", filepath.Join(dir, "cnitool"), "github.com/containernetworking/cni/cnitool"},
	}
	for _, b := range builds {
		cmd := exec.Command("go", b...)
		cmd.Dir = root
		if slices.Contains(b, "./cmd/knit-plugin") {
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0") // as the Makefile builds it
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go %s: %w\n%s", strings.Join(b, " "), err, out)
		}
	}
	return nil
}

// inside prepares the sandbox (private mounts, loopback, knit install) and
// runs the tests.
func inside(m *testing.M) int {
	if err := setupSandbox(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: setting up the sandbox:", err)
		return 1
	}
	return m.Run()
}
