// Package nstest gives integration tests their own network namespaces and
// the knit plugin binaries. Every namespace carries a unique name and is
// removed by t.Cleanup, on success and failure alike, so tests never touch
// the machine's root namespace and parallel packages never collide.
//
// Plugins builds cmd/knit-plugin once per test binary; Exec runs one of its
// types (or any CNI plugin binary) inside a test-made "host" namespace, the
// way a runtime would, and Run runs any command inside a namespace. A test
// package that builds plugins uses Main as its TestMain so the build
// directory is removed at exit.
package nstest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/knit-cni/knit/internal/netns"
)

var counter atomic.Int64

// UniqueName returns a name no other test process is using: "kt" + prefix +
// pid + a counter. Keep prefix short: names end up in interface names too.
func UniqueName(prefix string) string {
	return fmt.Sprintf("kt%s%d-%d", prefix, os.Getpid(), counter.Add(1))
}

// RequireRoot skips the test unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces")
	}
}

// New creates a named network namespace for the test and returns its path.
// It is deleted when the test ends.
func New(t testing.TB, prefix string) string {
	t.Helper()
	RequireRoot(t)
	name := UniqueName(prefix)
	path, err := netns.Create("", name)
	if err != nil {
		t.Fatalf("creating test namespace: %v", err)
	}
	t.Cleanup(func() {
		if err := netns.DeletePath(path); err != nil {
			t.Errorf("removing test namespace %s: %v", path, err)
		}
	})
	return path
}

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// repoRoot finds the module root from this source file's location.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// PluginDirEnv names an environment variable holding a ready-made plugin
// directory (knit-plugin plus a link per type). When it is set Plugins
// returns it instead of building; the kernel test harness sets it in its
// VM, which has no Go toolchain.
const PluginDirEnv = "KNIT_PLUGIN_DIR"

// Plugins builds cmd/knit-plugin once per test binary and returns a
// directory holding it as links named by every plugin type, ready to be
// CNI_PATH. The directory is removed when the process exits only if the
// caller arranges it (use Main as TestMain); it lives under os.TempDir.
// If $KNIT_PLUGIN_DIR is set, that directory is returned as is.
func Plugins(t testing.TB) string {
	t.Helper()
	if dir := os.Getenv(PluginDirEnv); dir != "" {
		if _, err := os.Stat(filepath.Join(dir, "knit-plugin")); err != nil {
			t.Fatalf("%s=%s has no knit-plugin binary: %v", PluginDirEnv, dir, err)
		}
		return dir
	}
	buildOnce.Do(func() {
		buildDir, buildErr = BuildPlugins()
	})
	if buildErr != nil {
		t.Fatalf("building plugins: %v", buildErr)
	}
	return buildDir
}

// BuildPlugins builds the multi-call plugin binary into a new temporary
// directory with one link per plugin type and returns the directory.
func BuildPlugins() (string, error) {
	dir, err := os.MkdirTemp("", "knit-plugins-")
	if err != nil {
		return "", err
	}
	if err := buildInto(dir); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}

func buildInto(dir string) error {
	bin := filepath.Join(dir, "knit-plugin")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/knit-plugin")
	cmd.Dir = repoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0") // as the Makefile builds it
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/knit-plugin: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--list").Output()
	if err != nil {
		return fmt.Errorf("%s --list: %v", bin, err)
	}
	for _, typ := range strings.Fields(string(out)) {
		if err := os.Symlink("knit-plugin", filepath.Join(dir, typ)); err != nil {
			return err
		}
	}
	return nil
}
