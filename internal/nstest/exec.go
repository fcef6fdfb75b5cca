package nstest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/knit-cni/knit/internal/netns"
)

// ExecTimeout bounds one plugin run or command started by Exec and Run.
const ExecTimeout = 2 * time.Minute

// Main is a TestMain for packages that call Plugins: it runs the tests,
// removes the plugin directory Plugins built and exits with the tests'
// status.
//
//	func TestMain(m *testing.M) { nstest.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	RemovePlugins()
	os.Exit(code)
}

// RemovePlugins removes the directory Plugins built, if it built one. Call
// it once all tests are done (Main does).
func RemovePlugins() {
	if buildDir != "" && strings.HasPrefix(filepath.Base(buildDir), "knit-plugins-") {
		os.RemoveAll(buildDir)
	}
}

// HostAndContainer creates a "host" and a "container" namespace for one test
// (both removed when it ends) and returns their paths.
func HostAndContainer(t testing.TB, prefix string) (host, container string) {
	t.Helper()
	return New(t, prefix+"h"), New(t, prefix+"c")
}

// PluginRun is what one plugin execution printed and how it exited.
type PluginRun struct {
	Stdout   []byte
	Stderr   []byte
	ExitCode int
}

// Exec runs the plugin binary typ from pluginDir with CNI_COMMAND=cmd inside
// the namespace hostNS, as a runtime would run it from the host namespace.
// The child sees only PATH, CNI_COMMAND, CNI_PATH (pluginDir unless env sets
// it; set it to "" to leave it out) and env. A cmd of "" leaves CNI_COMMAND
// unset. Stderr is logged. The test fails if the plugin cannot be run at
// all; a plugin failure is just a non-zero ExitCode.
func Exec(t testing.TB, hostNS, pluginDir, typ, cmd string, env map[string]string, stdin []byte) PluginRun {
	t.Helper()
	if hostNS == "" {
		t.Fatal("nstest.Exec: no host namespace given; plugins must never run in the machine's own namespace from a test")
	}
	vars := map[string]string{"PATH": os.Getenv("PATH"), "CNI_PATH": pluginDir}
	if cmd != "" {
		vars["CNI_COMMAND"] = cmd
	}
	for k, v := range env {
		vars[k] = v
	}
	var environ []string
	for k, v := range vars {
		if k == "CNI_PATH" && v == "" {
			continue
		}
		environ = append(environ, k+"="+v)
	}
	sort.Strings(environ)

	ctx, cancel := context.WithTimeout(context.Background(), ExecTimeout)
	defer cancel()
	c := exec.CommandContext(ctx, filepath.Join(pluginDir, typ))
	c.Env = environ
	c.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	err := netns.Do(hostNS, c.Run)
	run := PluginRun{Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}
	if stderr.Len() > 0 {
		t.Logf("%s %s stderr: %s", typ, cmd, bytes.TrimSpace(stderr.Bytes()))
	}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr) && exitErr.Exited():
		run.ExitCode = exitErr.ExitCode()
	default:
		t.Fatalf("running plugin %s (%s) in %s: %v", typ, cmd, hostNS, err)
	}
	return run
}

// Run runs argv inside the namespace at nsPath and returns its combined
// output; the test fails if the command fails.
func Run(t testing.TB, nsPath string, argv ...string) []byte {
	t.Helper()
	out, err := Output(nsPath, argv...)
	if err != nil {
		t.Fatalf("%s in %s: %v\n%s", strings.Join(argv, " "), nsPath, err, out)
	}
	return out
}

// Output runs argv inside the namespace at nsPath and returns its combined
// output and error, for commands expected to fail.
func Output(nsPath string, argv ...string) ([]byte, error) {
	if len(argv) == 0 {
		return nil, errors.New("nstest.Output: no command given")
	}
	ctx, cancel := context.WithTimeout(context.Background(), ExecTimeout)
	defer cancel()
	c := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	err := netns.Do(nsPath, c.Run)
	return out.Bytes(), err
}

// Start starts argv inside the namespace at nsPath and returns it running;
// it is killed (by its PID) and reaped when the test ends.
func Start(t testing.TB, nsPath string, argv ...string) *exec.Cmd {
	t.Helper()
	c := exec.Command(argv[0], argv[1:]...)
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	if err := netns.Do(nsPath, c.Start); err != nil {
		t.Fatalf("starting %s in %s: %v", strings.Join(argv, " "), nsPath, err)
	}
	t.Cleanup(func() {
		_ = c.Process.Kill()
		_ = c.Wait()
		if t.Failed() && out.Len() > 0 {
			t.Logf("%s output:\n%s", argv[0], out.Bytes())
		}
	})
	return c
}
