package main

// The closer: a plugin that changed nftables would wait 8–20 ms at exit
// while the kernel releases its nftables sockets (see internal/nft's
// Detach). Instead, after the answer is written, the plugin starts a copy
// of this binary in closer mode that inherits duplicates of those sockets,
// and exits at once. The closer waits until the plugin has exited (EOF on a
// pipe whose write end only the plugin holds), so that its own close is the
// last reference and the kernel's wait happens there, then exits. It runs
// in a session of its own with /dev/null as stdio, so a runtime reading the
// plugin's output sees EOF when the plugin exits and is never kept waiting
// for it; it is reparented to init (or the runtime's subreaper), which
// reaps it a few milliseconds later. Nothing it does affects the result.

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"syscall"
	"time"

	"github.com/knit-cni/knit/internal/nft"
	"github.com/knit-cni/knit/pkg/cni/skel"
	"golang.org/x/sys/unix"
)

// closerArg runs the binary as a closer: fd 3 is the pipe to wait on, fds
// 4 and up are the sockets to close.
const closerArg = "--close-nft-sockets"

// closerMaxWait bounds the closer's wait for its parent's exit.
const closerMaxWait = 10 * time.Second

func init() {
	if len(os.Args) == 2 && os.Args[1] == closerArg {
		runCloser()
		os.Exit(0)
	}
	nft.SetHandOff(func(fds []int) error {
		_, err := startCloser("/proc/self/exe", nil, fds)
		return err
	})
	skel.AtExit(func() {
		if err := nft.HandOff(); err != nil {
			slog.Debug("handing the nftables sockets to a closer", "error", err)
		}
	})
}

// startCloser starts exe in closer mode with fds (which it closes in this
// process either way) and returns the closer's PID without waiting for it.
// env is the closer's environment (nil: empty). The closer holds the fds
// until this process exits. Raw descriptors and syscall.StartProcess keep
// the sockets' mode as it is (see nft.Detach).
func startCloser(exe string, env []string, fds []int) (int, error) {
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
	files := append([]uintptr{uintptr(null), uintptr(null), uintptr(null), uintptr(p[0])}, uintptrs(fds)...)
	if env == nil {
		env = []string{}
	}
	pid, _, err := syscall.StartProcess(exe, []string{"knit-plugin", closerArg}, &syscall.ProcAttr{
		Env: env, Files: files, Sys: &syscall.SysProcAttr{Setsid: true},
	})
	if err != nil {
		unix.Close(p[1])
		return 0, fmt.Errorf("starting %s %s: %w", exe, closerArg, err)
	}
	// The write end p[1] stays open (close-on-exec, so no other child
	// inherits it) until this process exits; that EOF tells the closer to
	// go on.
	return pid, nil
}

func uintptrs(fds []int) []uintptr {
	out := make([]uintptr, len(fds))
	for i, fd := range fds {
		out[i] = uintptr(fd)
	}
	return out
}

// runCloser is the closer's side: wait for EOF on fd 3 (the parent has
// exited), then close every inherited descriptor.
func runCloser() {
	// Non-blocking, so that the runtime's poller honours the deadline.
	if unix.SetNonblock(3, true) == nil {
		wait := os.NewFile(3, "parent")
		wait.SetReadDeadline(time.Now().Add(closerMaxWait))
		// EOF: the parent has exited. An error or the deadline: close anyway.
		io.Copy(io.Discard, wait)
	}
	unix.CloseRange(3, ^uint(0), 0)
}
