package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/knit-cni/knit/internal/nstest"
)

// The integration tests run the real knit binary, built once, inside a
// host namespace each test makes, with plugins from the knit-plugin build
// first on the CNI path and Debian's reference plugins after it.

const referencePlugins = "/usr/lib/cni"

var (
	buildOnce  sync.Once
	knitBin    string
	pluginDir  string
	buildErr   error
	cleanupDir []string
)

func TestMain(m *testing.M) {
	code := m.Run()
	for _, d := range cleanupDir {
		os.RemoveAll(d)
	}
	os.Exit(code)
}

// binaries builds knit and knit-plugin (with its links) once.
func binaries(t *testing.T) (knit, plugins string) {
	t.Helper()
	nstest.RequireRoot(t)
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "knit-cli-")
		if err != nil {
			buildErr = err
			return
		}
		cleanupDir = append(cleanupDir, dir)
		knitBin = filepath.Join(dir, "knit")
		if out, err := exec.Command("go", "build", "-o", knitBin, ".").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/knit: %v\n%s", err, out)
			return
		}
		pluginDir, buildErr = nstest.BuildPlugins()
		if buildErr == nil {
			cleanupDir = append(cleanupDir, pluginDir)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return knitBin, pluginDir
}

// hasPlugin says whether the knit-plugin build provides typ.
func hasPlugin(t *testing.T, typ string) bool {
	_, plugins := binaries(t)
	fi, err := os.Lstat(filepath.Join(plugins, typ))
	return err == nil && fi.Mode()&os.ModeSymlink != 0
}

// env is one test's world: a host namespace the knit processes run in,
// and temporary conf, cache and IPAM directories.
type env struct {
	t                 *testing.T
	knit              string
	host              string // host netns path
	conf, cache, ipam string
	cniPath           string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	knit, plugins := binaries(t)
	return &env{
		t:       t,
		knit:    knit,
		host:    nstest.New(t, "h"),
		conf:    t.TempDir(),
		cache:   t.TempDir(),
		ipam:    t.TempDir(),
		cniPath: plugins + ":" + referencePlugins,
	}
}

type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// command builds a knit command with this env's directories.
func (e *env) command(args ...string) *exec.Cmd {
	full := append([]string{"--conf-dir", e.conf, "--cache-dir", e.cache, "--cni-path", e.cniPath}, args...)
	cmd := exec.Command(e.knit, full...)
	cmd.Env = append(os.Environ(), "CNI_ARGS=", "CAP_ARGS=", "CNI_IFNAME=")
	return cmd
}

// run runs knit in the host namespace and returns what it printed.
func (e *env) run(args ...string) result {
	e.t.Helper()
	cmd := e.command(args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	wait, err := startIn(e.host, cmd)
	if err != nil {
		e.t.Fatalf("starting knit %v: %v", args, err)
	}
	werr := wait()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case werr == nil:
	case errors.As(werr, &ee):
		r.code = ee.ExitCode()
	default:
		e.t.Fatalf("knit %v: %v", args, werr)
	}
	return r
}

// ok runs knit and fails the test unless it succeeds.
func (e *env) ok(args ...string) result {
	e.t.Helper()
	r := e.run(args...)
	if r.code != 0 {
		e.t.Fatalf("knit %s failed: %s", strings.Join(args, " "), r)
	}
	return r
}

// startIn starts cmd in the network namespace nsPath (from a locked
// thread that is discarded afterwards) and returns a function waiting for it.
func startIn(nsPath string, cmd *exec.Cmd) (func() error, error) {
	started := make(chan error, 1)
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread leaves with the goroutine
		fd, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			started <- err
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			started <- err
			return
		}
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		done <- cmd.Wait()
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return func() error { return <-done }, nil
}

// writeConf writes a network configuration file into the conf dir.
func (e *env) writeConf(file, content string) string {
	e.t.Helper()
	p := filepath.Join(e.conf, file)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// conflist writes a network named name with the given plugin objects.
func (e *env) conflist(name, version string, plugins ...string) string {
	return e.writeConf(name+".conflist", fmt.Sprintf(`{"cniVersion":%q,"name":%q,"plugins":[%s]}`,
		version, name, strings.Join(plugins, ",")))
}

// hostLocal is a host-local plugin object (used directly in the chain, so
// the result carries its addresses) keeping its state in the env's dir.
func (e *env) hostLocal(subnet string) string {
	return fmt.Sprintf(`{"type":"host-local","ipam":{"type":"host-local","ranges":[[{"subnet":%q}]],"dataDir":%q}}`, subnet, e.ipam)
}

func (e *env) cacheFiles() []string {
	e.t.Helper()
	ents, err := os.ReadDir(filepath.Join(e.cache, "results"))
	if err != nil && !os.IsNotExist(err) {
		e.t.Fatal(err)
	}
	var names []string
	for _, en := range ents {
		names = append(names, en.Name())
	}
	return names
}
