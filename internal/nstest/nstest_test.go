package nstest

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// nsID returns the "net:[inode]" identity of the namespace at path.
func nsID(t *testing.T, path string) string {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("net:[%d]", st.Ino)
}

func TestNewRemovesNamespace(t *testing.T) {
	RequireRoot(t)
	var path string
	t.Run("inner", func(t *testing.T) {
		path = New(t, "nsn")
		if nsID(t, path) == nsID(t, "/proc/self/ns/net") {
			t.Fatal("New returned the test's own namespace")
		}
	})
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("%s still exists after its test ended (%v)", path, err)
	}
}

func TestExecRunsInHostNamespace(t *testing.T) {
	RequireRoot(t)
	host := New(t, "nse")
	// sh reads its script from stdin, like a plugin reads its config.
	r := Exec(t, host, "/bin", "sh", "ADD", map[string]string{"X": "1"},
		[]byte("readlink /proc/self/ns/net; echo \"$CNI_COMMAND $X $CNI_PATH\"; echo oops >&2; exit 3"))
	lines := strings.Split(strings.TrimSpace(string(r.Stdout)), "\n")
	if len(lines) != 2 || lines[0] != nsID(t, host) {
		t.Errorf("ran in %q, want %s", lines, nsID(t, host))
	}
	if len(lines) == 2 && lines[1] != "ADD 1 /bin" {
		t.Errorf("environment seen: %q", lines[1])
	}
	if r.ExitCode != 3 || strings.TrimSpace(string(r.Stderr)) != "oops" {
		t.Errorf("exit %d stderr %q", r.ExitCode, r.Stderr)
	}
	r = Exec(t, host, "/bin", "sh", "", map[string]string{"CNI_PATH": ""}, []byte(`echo "[${CNI_COMMAND-unset}] [${CNI_PATH-unset}]"`))
	if got := strings.TrimSpace(string(r.Stdout)); got != "[unset] [unset]" {
		t.Errorf("unset variables seen as %q", got)
	}
}

func TestRunOutputStartAndLinks(t *testing.T) {
	RequireRoot(t)
	a, b := HostAndContainer(t, "nsr")
	if LinkUp(t, a, "lo") || !LinkExists(t, a, "lo") || LinkExists(t, a, "nope0") {
		t.Fatal("unexpected link state in a fresh namespace")
	}
	Run(t, a, "ip", "link", "set", "lo", "up")
	if !LinkUp(t, a, "lo") || LinkUp(t, b, "lo") {
		t.Fatal("Run did not act in exactly the namespace given")
	}
	if got := Addrs(t, a, "lo"); !slices.Equal(got, []string{"127.0.0.1/8", "::1/128"}) {
		t.Errorf("lo addresses %v", got)
	}
	if out, err := Output(b, "ip", "link", "show", "nope0"); err == nil {
		t.Errorf("Output of a failing command returned no error: %s", out)
	}
	c := Start(t, b, "sleep", "60")
	if got, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", c.Process.Pid)); got != nsID(t, b) {
		t.Errorf("started process is in %s, want %s", got, nsID(t, b))
	}
}

func TestPluginsFromEnv(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/knit-plugin", []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv(PluginDirEnv, dir)
	if got := Plugins(t); got != dir {
		t.Errorf("Plugins() = %q with %s=%s", got, PluginDirEnv, dir)
	}
}
