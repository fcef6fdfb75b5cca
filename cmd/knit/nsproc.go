package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/knit-cni/knit/internal/netns"
)

// forwardedSignals are passed on to a child running in a namespace; knit
// itself keeps running so it can clean up after the child exits.
var forwardedSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT}

// nsProcess is a command started inside a network namespace.
type nsProcess struct {
	cmd  *exec.Cmd
	done chan error // receives cmd.Wait's error once
}

// startInNetns starts cmd with the network namespace at nsPath. It enters
// the namespace on a locked OS thread and forks from that thread, so the
// child inherits it; the thread also gets a private mount namespace with
// /sys remounted, so /sys/class/net shows the namespace's interfaces, as
// with `ip netns exec`. The thread never returns to the Go scheduler: it is
// locked until it ends, after the child has been waited for, and the runtime
// then discards it.
func startInNetns(nsPath string, cmd *exec.Cmd) (*nsProcess, error) {
	if err := netns.Check(nsPath); err != nil {
		return nil, err
	}
	p := &nsProcess{cmd: cmd, done: make(chan error, 1)}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // deliberately never unlocked
		if err := enterNetns(nsPath); err != nil {
			started <- err
			return
		}
		if err := cmd.Start(); err != nil {
			started <- fmt.Errorf("starting %s: %w", cmd.Path, err)
			return
		}
		started <- nil
		p.done <- cmd.Wait()
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return p, nil
}

// enterNetns switches the calling (locked) thread into the namespace and a
// private mount namespace showing that namespace's sysfs.
func enterNetns(nsPath string) error {
	fd, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening network namespace %s: %w", nsPath, err)
	}
	defer unix.Close(fd)
	if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("entering network namespace %s: %w", nsPath, err)
	}
	// The mount namespace only makes /sys right; the network namespace is
	// what matters, so failures here are logged, not fatal.
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		slog.Debug("no private mount namespace; /sys shows the caller's interfaces", "err", err)
		return nil
	}
	if err := unix.Mount("", "/", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		slog.Debug("making / a slave mount", "err", err)
		return nil
	}
	if err := unix.Mount("sysfs", "/sys", "sysfs", 0, ""); err != nil {
		slog.Debug("mounting the namespace's sysfs on /sys", "err", err)
	}
	return nil
}

// wait waits for the child, passing on every signal that arrives on sigs,
// and returns the child's exit status: its exit code, or 128+N if signal N
// ended it, as shells report it.
func (p *nsProcess) wait(sigs <-chan os.Signal) (int, error) {
	for {
		select {
		case s := <-sigs:
			slog.Info("forwarding signal to the child", "signal", s, "pid", p.cmd.Process.Pid)
			if err := p.cmd.Process.Signal(s); err != nil && !errors.Is(err, os.ErrProcessDone) {
				slog.Warn("forwarding signal", "signal", s, "err", err)
			}
		case err := <-p.done:
			return exitStatus(p.cmd, err)
		}
	}
}

func exitStatus(cmd *exec.Cmd, err error) (int, error) {
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return 1, fmt.Errorf("waiting for %s: %w", cmd.Path, err)
	}
	st := cmd.ProcessState
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return st.ExitCode(), nil
}

// notifySignals starts catching the forwarded signals.
func notifySignals() (chan os.Signal, func()) {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, forwardedSignals...)
	return sigs, func() { signal.Stop(sigs) }
}

// commandFor builds the child command with the caller's stdio.
func commandFor(g *globals, argv []string) (*exec.Cmd, error) {
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return nil, fmt.Errorf("command %q not found: give a path or put it on PATH: %w", argv[0], err)
	}
	cmd := exec.Command(path, argv[1:]...)
	cmd.Args[0] = argv[0]
	cmd.Stdin, cmd.Stdout, cmd.Stderr = g.stdin, g.stdout, g.stderr
	return cmd, nil
}
