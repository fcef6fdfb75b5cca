package nft

import (
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The closer holds Detach's socket duplicates until its parent has exited
// (EOF on a pipe or socket whose other end only the parent holds), so that
// its own close drops the last references and the kernel's wait happens
// there, then exits. It runs in a session of its own with /dev/null as
// stdio, so a runtime reading the parent's output sees EOF when the parent
// exits and never waits for the closer; once the parent has exited, init
// (or the runtime, if it is a child subreaper that reaps) reaps it.
// Nothing it does can change the parent's result.
//
// There are two ways to start one. ForkCloser (fork_linux.go), which
// knit-plugin uses, forks this process and runs only raw system calls in
// the child. StartCloser, below, execs a binary that understands CloserArg
// (knit-plugin does, from cmd/knit-plugin/closer.go) and calls RunCloser:
// it costs the new program's start-up (~3 ms of CPU) and blocks the caller
// until the exec, and is kept for binaries that cannot fork safely and so
// that the two can be timed against each other.

// CloserArg, as the only argument, runs a binary as a closer: fd 3 is the
// pipe to wait on, fds 4 and up are the sockets to close.
const CloserArg = "--close-nft-sockets"

// closerMaxWait bounds the closer's wait for its parent's exit (a
// variable only so that tests can shorten it).
var closerMaxWait = 10 * time.Second

// closerLinger is how long the closer keeps the sockets after its parent
// has exited. Their release holds nf_tables' commit lock through the
// kernel's wait for the pending transaction cleanup (an RCU grace period,
// 8–20 ms), and every nftables change in the namespace waits for that lock.
// Released at once, the sockets of a plugin would block the plugin the
// runtime runs next in the chain, which commits a few milliseconds later
// (portmap after bridge; bridge's DEL after portmap's). Some 50 ms later
// the chain is done and the cleanup has long finished, so the release
// holds the lock for microseconds. Measured through cnitool on bridge +
// portmap, interleaved, n=40: ADD 26.7 → 23.3 ms, DEL 45.3 → 38.0 ms with
// 40 ms; 100 ms gave the same.
var closerLinger = 50 * time.Millisecond

// StartCloser starts exe with CloserArg, handing it fds (closed in this
// process either way), and returns the closer's PID without waiting for
// it. env is the closer's environment (nil: empty). The closer holds the
// fds until this process exits. Raw descriptors and syscall.StartProcess
// leave the sockets' mode alone (see Detach).
func StartCloser(exe string, env []string, fds []int) (int, error) {
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	null, err := unix.Open(os.DevNull, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("opening %s for the closer: %w", os.DevNull, err)
	}
	defer unix.Close(null)
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return 0, fmt.Errorf("creating the closer's pipe: %w", err)
	}
	defer unix.Close(p[0])
	files := []uintptr{uintptr(null), uintptr(null), uintptr(null), uintptr(p[0])}
	for _, fd := range fds {
		files = append(files, uintptr(fd))
	}
	if env == nil {
		env = []string{}
	}
	pid, _, err := syscall.StartProcess(exe, []string{"knit-plugin", CloserArg}, &syscall.ProcAttr{
		Env: env, Files: files, Sys: &syscall.SysProcAttr{Setsid: true},
	})
	if err != nil {
		unix.Close(p[1])
		return 0, fmt.Errorf("starting %s %s: %w", exe, CloserArg, err)
	}
	// The write end p[1] stays open (close-on-exec, so no other child
	// inherits it) until this process exits: that EOF tells the closer to
	// go on.
	return pid, nil
}

// RunCloser is the closer's side: it waits for EOF on fd 3 (the parent has
// exited; at most closerMaxWait) and closerLinger more, then closes every
// inherited descriptor.
// The caller exits next.
func RunCloser() {
	// Non-blocking, so that the runtime's poller honours the deadline.
	if unix.SetNonblock(3, true) == nil {
		wait := os.NewFile(3, "parent")
		wait.SetReadDeadline(time.Now().Add(closerMaxWait))
		// EOF: the parent has exited. An error or the deadline: close anyway.
		io.Copy(io.Discard, wait)
	}
	time.Sleep(closerLinger)
	unix.CloseRange(3, ^uint(0), 0)
}
