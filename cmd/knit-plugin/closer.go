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
	"os/exec"
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
	skel.AtExit(handOffNFT)
}

// handOffNFT passes the process's nftables sockets to a closer if it
// changed nftables; failures only cost the wait it would have avoided.
func handOffNFT() {
	files, err := nft.Detach()
	if err != nil {
		slog.Debug("handing off the nftables sockets", "error", err)
	}
	if len(files) == 0 {
		return
	}
	if _, err := startCloser("/proc/self/exe", nil, files); err != nil {
		slog.Debug("starting the nftables socket closer", "error", err)
	}
}

// startCloser starts exe in closer mode with files (which it closes in this
// process either way) and returns the closer's PID without waiting for it.
// env is the closer's environment (nil: empty). The closer holds the files
// until this process exits.
func startCloser(exe string, env []string, files []*os.File) (int, error) {
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	r, w, err := os.Pipe()
	if err != nil {
		return 0, fmt.Errorf("creating the closer's pipe: %w", err)
	}
	defer r.Close()
	cmd := exec.Command(exe, closerArg)
	cmd.Args[0] = "knit-plugin"
	cmd.Env = env
	if env == nil {
		cmd.Env = []string{}
	}
	// Passing the files puts their (shared) descriptions in blocking mode,
	// which is harmless in a process about to exit.
	cmd.ExtraFiles = append([]*os.File{r}, files...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return 0, fmt.Errorf("starting %s %s: %w", exe, closerArg, err)
	}
	// The write end stays open (close-on-exec, so no other child inherits
	// it) until this process exits; that EOF tells the closer to go on.
	keepUntilExit = append(keepUntilExit, w)
	pid := cmd.Process.Pid
	cmd.Process.Release()
	return pid, nil
}

// keepUntilExit holds the closers' pipe ends so that the garbage collector
// does not close them early.
var keepUntilExit []*os.File

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
