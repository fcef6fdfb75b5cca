package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/knit-cni/knit/internal/netns"
	"github.com/knit-cni/knit/internal/nft"
	"github.com/knit-cni/knit/internal/nstest"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The fake plugin: the test binary, run with these variables set, acts as a
// plugin that changes nftables in the namespace at KNIT_CLOSER_TEST_PLUGIN
// (serialised by the lock file KNIT_CLOSER_TEST_LOCK), holds an exclusive
// flock on KNIT_CLOSER_TEST_HELD, hands its netfilter sockets to a forked
// closer, reports, and exits
// once its stdin closes, the flock and its sockets still open.
const (
	fakePluginEnv = "KNIT_CLOSER_TEST_PLUGIN"
	fakeLockEnv   = "KNIT_CLOSER_TEST_LOCK"
	fakeHeldEnv   = "KNIT_CLOSER_TEST_HELD"
)

func init() {
	if ns := os.Getenv(fakePluginEnv); ns != "" {
		fakePlugin(ns)
	}
}

// fakePlugin prints "PID INODE..." (the closer's PID and the inodes of this
// process's netfilter sockets), waits for stdin to close and exits.
func fakePlugin(nsPath string) {
	fail := func(what string, err error) {
		fmt.Println("error:", what, err)
		os.Exit(1)
	}
	held, err := os.OpenFile(os.Getenv(fakeHeldEnv), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		fail("opening the held file:", err)
	}
	if err := unix.Flock(int(held.Fd()), unix.LOCK_EX); err != nil {
		fail("locking the held file:", err)
	}
	h, err := vnetns.GetFromPath(nsPath)
	if err != nil {
		fail("opening the namespace:", err)
	}
	m := nft.NewMasq(nft.WithNetNS(int(h)), nft.WithLockFile(os.Getenv(fakeLockEnv)))
	o := nft.Owner{Network: "closertest", ContainerID: "c1", IfName: "eth0"}
	addr := net.IPNet{IP: net.IPv4(10, 95, 0, 2), Mask: net.CIDRMask(24, 32)}
	if err := m.Add(o, []net.IPNet{addr}); err != nil {
		fail("masquerade:", err)
	}
	inodes := socketInodes(os.Getpid())
	fds, err := nft.Detach()
	if err != nil || len(fds) == 0 {
		fail("nothing to hand off:", err)
	}
	pid, err := nft.ForkCloser(fds)
	if err != nil {
		fail("starting the closer:", err)
	}
	fmt.Println(strconv.Itoa(pid) + " " + strings.Join(inodes, " "))
	io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}

// socketInodes lists the "socket:[N]" targets of pid's netfilter sockets
// (all of pid's sockets when pid is not this process).
func socketInodes(pid int) []string {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		t, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil || !strings.HasPrefix(t, "socket:") {
			continue
		}
		if pid == os.Getpid() {
			fd, _ := strconv.Atoi(e.Name())
			p, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
			if err != nil || p != unix.NETLINK_NETFILTER {
				continue
			}
		}
		out = append(out, t)
	}
	return out
}

// fdTargets maps pid's descriptors to their targets.
func fdTargets(pid int) map[int]string {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, _ := os.ReadDir(dir)
	out := map[int]string{}
	for _, e := range ents {
		fd, _ := strconv.Atoi(e.Name())
		out[fd], _ = os.Readlink(filepath.Join(dir, e.Name()))
	}
	return out
}

// netlinkInodes lists the inodes of the netfilter netlink sockets that
// exist in the namespace at nsPath, as "socket:[N]".
func netlinkInodes(t *testing.T, nsPath string) []string {
	t.Helper()
	var out []string
	err := netns.Do(nsPath, func() error {
		b, err := os.ReadFile("/proc/thread-self/net/netlink")
		if err != nil {
			return err
		}
		for _, l := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(l)
			if len(f) >= 10 && f[1] == strconv.Itoa(unix.NETLINK_NETFILTER) {
				out = append(out, "socket:["+f[len(f)-1]+"]")
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("listing netlink sockets in %s: %v", nsPath, err)
	}
	return out
}

// TestCloserTakesSocketsAndExits runs a plugin-like process that changes
// nftables and hands off to the forked closer knit-plugin uses. While the
// process lives the closer holds every one of
// its netfilter sockets and none of its stdio or other files. Then the
// closer is stopped (SIGSTOP) and the process exits: its output ends at
// once, a file it held locked can be locked at once, and the netfilter
// sockets live on in the stopped closer; continued, the closer exits and
// the sockets are gone.
func TestCloserTakesSocketsAndExits(t *testing.T) {
	ns := nstest.New(t, "kcl")
	dir := t.TempDir()
	heldPath := filepath.Join(dir, "held")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fakePluginEnv+"="+ns, fakeLockEnv+"="+filepath.Join(dir, "lock"), fakeHeldEnv+"="+heldPath)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	errOut, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	rd := bufio.NewReader(out)
	line, err := rd.ReadString('\n')
	if err != nil || strings.HasPrefix(line, "error") {
		t.Fatalf("fake plugin: %q %v", line, err)
	}
	fields := strings.Fields(line)
	closer, err := strconv.Atoi(fields[0])
	if err != nil || len(fields) < 2 {
		t.Fatalf("fake plugin reported %q: want the closer's PID and at least one socket", line)
	}
	handed := fields[1:]
	t.Cleanup(func() {
		if alive(closer) {
			unix.Kill(closer, unix.SIGKILL)
		}
	})

	// The closer waits for the plugin's exit, so it holds the sockets now,
	// and nothing of the plugin's but them.
	held := socketInodes(closer)
	for _, s := range handed {
		if !slices.Contains(held, s) {
			t.Errorf("closer %d does not hold the plugin's netfilter socket %s (it holds %v)", closer, s, held)
		}
	}
	if sid, err := unix.Getsid(closer); err != nil || sid != closer {
		t.Errorf("closer %d is not in a session of its own (sid %d, %v)", closer, sid, err)
	}
	fds := fdTargets(closer)
	for fd := 0; fd <= 2; fd++ {
		if fds[fd] != os.DevNull {
			t.Errorf("closer's fd %d is %q, want %s", fd, fds[fd], os.DevNull)
		}
	}
	plugin := fdTargets(cmd.Process.Pid)
	for fd, target := range fds {
		if target == heldPath || (fd > 2 && strings.HasPrefix(target, "pipe:") && slices.Contains([]string{plugin[1], plugin[2]}, target)) {
			t.Errorf("closer's fd %d is the plugin's %s", fd, target)
		}
	}
	ok := len(fds) == 4+len(handed) && strings.HasPrefix(fds[3], "socket:")
	for i := range handed {
		ok = ok && slices.Contains(handed, fds[4+i])
	}
	if !ok {
		t.Errorf("forked closer holds %v; want /dev/null on 0-2, its socket on 3 and the handed sockets %v", fds, handed)
	}

	// Stopped, the closer cannot exit: whatever the runtime and other
	// plugins see next must not depend on it.
	if err := unix.Kill(closer, unix.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stdin.Close()
	eof := make(chan error, 1)
	go func() {
		rest, err := io.ReadAll(io.MultiReader(rd, errOut))
		if err == nil && len(rest) != 0 {
			err = fmt.Errorf("unexpected output %q", rest)
		}
		eof <- err
	}()
	select {
	case err := <-eof:
		if err != nil {
			t.Errorf("fake plugin's output after the report: %v", err)
		}
	case <-time.After(time.Minute):
		unix.Kill(closer, unix.SIGKILL)
		t.Fatalf("no EOF on the plugin's stdout and stderr a minute after its stdin closed: the stopped closer holds them")
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("fake plugin: %v", err)
	}
	lock, err := os.OpenFile(heldPath, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Errorf("the file the plugin held locked is still locked after its exit: %v (the closer holds it)", err)
	}
	live := netlinkInodes(t, ns)
	for _, s := range handed {
		if !slices.Contains(live, s) {
			t.Errorf("netfilter socket %s was released at the plugin's exit, with the closer still holding it", s)
		}
	}

	if err := unix.Kill(closer, unix.SIGCONT); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for alive(closer) || slices.ContainsFunc(handed, func(s string) bool { return slices.Contains(netlinkInodes(t, ns), s) }) {
		if time.Now().After(deadline) {
			t.Fatalf("a minute after the plugin's exit: closer running %v, netfilter sockets %v (handed %v)", alive(closer), netlinkInodes(t, ns), handed)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// TestDetachWithoutChange: a process that changed nothing hands nothing off.
func TestDetachWithoutChange(t *testing.T) {
	if nft.Changed() {
		t.Skip("an earlier test in this process changed nftables")
	}
	files, err := nft.Detach()
	if err != nil || files != nil {
		t.Fatalf("Detach without a change = %v, %v; want nil, nil", files, err)
	}
}
