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

	"github.com/knit-cni/knit/internal/nft"
	"github.com/knit-cni/knit/internal/nstest"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// fakePluginEnv makes the test binary act as a plugin that changes nftables
// in the namespace at the given path, hands its sockets off, reports, and
// exits once its stdin closes.
const fakePluginEnv = "KNIT_CLOSER_TEST_PLUGIN"

func init() {
	if ns := os.Getenv(fakePluginEnv); ns != "" {
		fakePlugin(ns)
	}
}

// fakePlugin prints "PID INODE..." (the closer's PID and the inodes of this
// process's netfilter sockets), waits for stdin to close and exits.
func fakePlugin(nsPath string) {
	h, err := vnetns.GetFromPath(nsPath)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	m := nft.NewMasq(nft.WithNetNS(int(h)), nft.WithLockFile(os.Getenv("KNIT_CLOSER_TEST_LOCK")))
	o := nft.Owner{Network: "closertest", ContainerID: "c1", IfName: "eth0"}
	addr := net.IPNet{IP: net.IPv4(10, 95, 0, 2), Mask: net.CIDRMask(24, 32)}
	if err := m.Add(o, []net.IPNet{addr}); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	inodes := socketInodes(os.Getpid())
	fds, err := nft.Detach()
	if err != nil || len(fds) == 0 {
		fmt.Println("error: nothing to hand off:", err)
		os.Exit(1)
	}
	pid, err := nft.StartCloser(os.Args[0], nil, fds)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
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

// TestCloserTakesSocketsAndExits runs a plugin-like process that changes
// nftables and hands off: while the process lives the closer holds every
// one of its netfilter sockets and none of its stdio; the process's output
// ends when it exits, and the closer is gone soon after.
func TestCloserTakesSocketsAndExits(t *testing.T) {
	ns := nstest.New(t, "kcl")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fakePluginEnv+"="+ns, "KNIT_CLOSER_TEST_LOCK="+filepath.Join(t.TempDir(), "lock"))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
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
	t.Cleanup(func() {
		if alive(closer) {
			unix.Kill(closer, unix.SIGKILL)
		}
	})

	// The closer waits for the plugin's exit, so it holds the sockets now.
	held := socketInodes(closer)
	for _, s := range fields[1:] {
		if !slices.Contains(held, s) {
			t.Errorf("closer %d does not hold the plugin's netfilter socket %s (it holds %v)", closer, s, held)
		}
	}
	if sid, err := unix.Getsid(closer); err != nil || sid != closer {
		t.Errorf("closer %d is not in a session of its own (sid %d, %v)", closer, sid, err)
	}
	for fd := 0; fd <= 2; fd++ {
		if t1, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", closer, fd)); t1 != os.DevNull {
			t.Errorf("closer's fd %d is %q, want %s", fd, t1, os.DevNull)
		}
	}

	// The plugin exits; its stdout reaches EOF although the closer lives on.
	stdin.Close()
	if rest, err := io.ReadAll(rd); err != nil || len(rest) != 0 {
		t.Errorf("fake plugin's output after the report: %q %v", rest, err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("fake plugin: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for alive(closer) {
		if time.Now().After(deadline) {
			t.Fatalf("closer %d still running 5 s after the plugin exited", closer)
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
