package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/knit-cni/knit/internal/netns"
	"github.com/knit-cni/knit/internal/nstest"
)

// ptp is a ptp plugin object with host-local IPAM in the env's dir: it
// creates a real eth0 in the container and its peer in the host namespace.
func (e *env) ptp(subnet string) string {
	return fmt.Sprintf(`{"type":"ptp","ipam":{"type":"host-local","ranges":[[{"subnet":%q}]],"dataDir":%q}}`, subnet, e.ipam)
}

func nsGone(t *testing.T, name string) {
	t.Helper()
	if _, err := os.Lstat(netns.Path("", name)); !os.IsNotExist(err) {
		t.Errorf("namespace %s still exists after knit run (err %v)", name, err)
	}
}

// deleteLater removes a namespace a knit command was meant to remove, in
// case the test fails before it does.
func deleteLater(t *testing.T, name string) {
	t.Cleanup(func() { _ = netns.Delete("", name) })
}

func TestRun(t *testing.T) {
	e := newEnv(t)
	n1, n2 := nstest.UniqueName("r"), nstest.UniqueName("r")
	e.conflist(n1, "1.0.0", `{"type":"loopback"}`, e.ptp("10.214.0.0/24"))
	e.conflist(n2, "1.0.0", e.ptp("10.215.0.0/24"))

	name := nstest.UniqueName("x")
	deleteLater(t, name)
	r := e.run("run", "--name", name, "--net", n1, "--net", n2, "--",
		"sh", "-c", "ip -o -4 addr; echo sys: $(ls /sys/class/net); echo ns: $(readlink /proc/self/ns/net); exit 5")
	if r.code != 5 {
		t.Fatalf("want the child's exit status 5: %s", r)
	}
	for _, want := range []string{"lo    inet 127.0.0.1/8", "eth0    inet 10.214.0.", "eth1    inet 10.215.0.", "sys: eth0 eth1 lo"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("child output lacks %q:\n%s", want, r.stdout)
		}
	}
	var self unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &self); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(r.stdout, fmt.Sprintf("ns: net:[%d]", self.Ino)) {
		t.Errorf("child ran in the test's own namespace:\n%s", r.stdout)
	}
	nsGone(t, name)
	if files := e.cacheFiles(); len(files) != 0 {
		t.Errorf("cache files left after run: %v", files)
	}
	assertNoReservations(t, e, n1)
	assertNoReservations(t, e, n2)

	// Success is exit status 0, with a generated name.
	r = e.run("run", "--net", n1, "--", "true")
	if r.code != 0 {
		t.Fatalf("knit run -- true: %s", r)
	}

	// A failing attachment undoes the earlier ones and the namespace.
	broken := nstest.UniqueName("b")
	e.conflist(broken, "1.0.0", `{"type":"no-such-plugin"}`)
	name = nstest.UniqueName("x")
	deleteLater(t, name)
	r = e.run("run", "--name", name, "--net", n1, "--net", broken, "--", "true")
	if r.code != 1 || !strings.Contains(r.stderr, "(CNI error code 50)") {
		t.Fatalf("run with a broken network: %s", r)
	}
	nsGone(t, name)
	if files := e.cacheFiles(); len(files) != 0 {
		t.Errorf("cache files left after a failed run: %v", files)
	}
	assertNoReservations(t, e, n1)

	// Usage mistakes change nothing.
	for _, args := range [][]string{{"run", "--", "true"}, {"run", "--net", n1, "true"}, {"run", "--net", "nonet", "--", "true"},
		{"run", "--net", n1, "--", "/nonexistent/cmd"}} {
		if r := e.run(args...); r.code == 0 {
			t.Errorf("knit %v succeeded", args)
		}
	}
	if files := e.cacheFiles(); len(files) != 0 {
		t.Errorf("cache files left after bad runs: %v", files)
	}
}

// TestRunSIGTERM stops knit run with SIGTERM while the child runs: the
// child gets the signal, and the attachment and namespace are removed.
func TestRunSIGTERM(t *testing.T) {
	e := newEnv(t)
	net1 := nstest.UniqueName("r")
	e.conflist(net1, "1.0.0", `{"type":"loopback"}`, e.ptp("10.216.0.0/24"))
	name := nstest.UniqueName("x")
	deleteLater(t, name)

	cmd := e.command("run", "--name", name, "--net", net1, "--", "sleep", "60")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	wait, err := startIn(e.host, cmd)
	if err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = wait()
		}
	}()
	// Wait until the child runs: attached (cached) and sleep started.
	deadline := time.Now().Add(20 * time.Second)
	for len(e.cacheFiles()) == 0 || !childRunning(cmd.Process.Pid, "sleep") {
		if time.Now().After(deadline) {
			t.Fatalf("knit run did not start the child in time\n%s", errb.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	werr := wait()
	killed = true
	var ee *exec.ExitError
	if !errors.As(werr, &ee) || ee.ExitCode() != 128+int(syscall.SIGTERM) {
		t.Fatalf("want exit status 143 (child ended by SIGTERM), got %v\n%s", werr, errb.String())
	}
	nsGone(t, name)
	if files := e.cacheFiles(); len(files) != 0 {
		t.Errorf("cache files left after SIGTERM: %v", files)
	}
	assertNoReservations(t, e, net1)
}

// childRunning says whether pid has a child process named comm.
func childRunning(pid int, comm string) bool {
	ents, _ := os.ReadDir("/proc")
	for _, en := range ents {
		stat, err := os.ReadFile("/proc/" + en.Name() + "/stat")
		if err != nil {
			continue
		}
		// "pid (comm) state ppid ..."
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || !strings.HasSuffix(s[:i], "("+comm) {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[1] == fmt.Sprint(pid) {
			return true
		}
	}
	return false
}
