package nft

import (
	"errors"
	"fmt"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The forked closer
//
// ForkCloser runs the closer as a plain fork of this process (clone with
// only SIGCHLD: no shared memory, no exec), whose child makes nothing but
// raw system calls, as the child of a fork does in package syscall between
// fork and exec. Compared with exec'ing a Go binary it saves the plugin the
// vfork-until-exec wait and the machine the new program's start-up (~3 ms
// of CPU): the child's whole life is about fifteen system calls and one
// blocking poll.
//
// What the child may do. It is a copy of one thread of a Go process: the
// runtime's other threads, its signal handling, scheduler and allocator are
// not there, and its locks may be held by threads that no longer exist.
// So the child runs one function, forkCloser, marked nosplit (no stack
// growth check, which could call the runtime), norace (no race-detector
// calls) and nocheckptr, that only reads a plan computed before the fork
// and calls syscall.RawSyscall/RawSyscall6 (themselves nosplit and
// norace, and calling no runtime code), and it never returns: it ends in
// exit_group. All signals are blocked before the fork on the forking
// thread, so none can run a Go signal handler in the child (SIGKILL still
// ends it); the parent restores its mask right after.
//
// What the child holds. Before it reports, the child puts /dev/null on
// 0, 1 and 2 (a runtime reading the plugin's stdout or stderr sees EOF when
// the plugin exits), its end of the report socket on 3 and the sockets to
// hold on 4 and up, and closes every other descriptor (close_range), so no
// lock file, namespace, rtnetlink socket or pipe of the plugin stays
// referenced by it. ForkCloser returns only after that report, so the
// plugin may close or release anything right away.
//
// When it exits. The parent keeps its end of the report socket
// (close-on-exec) until it exits; the child polls its end until that EOF,
// at most closerMaxWait, sleeps closerLinger (see there), then exits, and
// its exit drops the last references to the sockets, where the kernel's
// wait happens.
//
// Who reaps it. While the parent lives, the child is the parent's: a
// long-lived caller must reap it (wait4 on the returned PID) once it has
// exited. When the parent exits, the child is reparented to the nearest
// subreaper or to init, like any daemonising helper. init reaps it. A runtime that made itself a
// child subreaper reaps it if it waits for any child (a wait4(-1) reaper
// loop, as in containerd's shim); one that only waits for the PIDs it
// started leaves it a zombie until the runtime exits.

// closerPlan is everything the forked child needs, computed before the
// fork: after it the child may not allocate, grow its stack or call the Go
// runtime.
type closerPlan struct {
	cloneA1, cloneA2 uintptr       // clone's first two arguments (s390x swaps them)
	sock             uintptr       // the child's end of the report socket
	fds              []uintptr     // the sockets to hold, at any numbers
	moved            []uintptr     // scratch: fds moved above the fixed slots
	limit            uintptr       // highest descriptor to close if close_range is missing
	timeout          unix.Timespec // closerMaxWait; ppoll updates it
	linger           unix.Timespec // closerLinger
	poll             unix.PollFd
	report           [2]byte // 0, 0 or the failed step and its errno
}

// Steps the child reports when one fails.
const (
	stepSetsid = iota + 1
	stepDevNull
	stepMove
	stepPlace
	stepCloseRest
)

// atFDCWD is AT_FDCWD (-100) as a system call argument.
const atFDCWD = ^uintptr(99)

var devNull = [...]byte{'/', 'd', 'e', 'v', '/', 'n', 'u', 'l', 'l', 0}

// ForkCloser hands fds (closed in this process either way) to a closer
// forked from this process (see above) and returns its PID once the closer
// holds them and nothing else of this process. The closer holds them until
// this process exits (at most closerMaxWait), then exits. It leaves the
// sockets' mode alone (see Detach). An error means the sockets are not
// handed off (this process will wait for the kernel at exit).
func ForkCloser(fds []int) (int, error) {
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("creating the closer's report socket: %w", err)
	}
	p := &closerPlan{
		cloneA1: uintptr(unix.SIGCHLD),
		sock:    uintptr(sp[1]),
		fds:     make([]uintptr, len(fds)),
		moved:   make([]uintptr, len(fds)),
		limit:   descriptorLimit(),
		timeout: unix.NsecToTimespec(closerMaxWait.Nanoseconds()),
		linger:  unix.NsecToTimespec(closerLinger.Nanoseconds()),
		poll:    unix.PollFd{Fd: 3, Events: unix.POLLIN},
	}
	if runtime.GOARCH == "s390x" {
		p.cloneA1, p.cloneA2 = 0, uintptr(unix.SIGCHLD)
	}
	for i, fd := range fds {
		p.fds[i] = uintptr(fd)
	}

	runtime.LockOSThread()
	var all, old unix.Sigset_t
	for i := range all.Val {
		all.Val[i] = ^all.Val[i]
	}
	if err := unix.PthreadSigmask(unix.SIG_SETMASK, &all, &old); err != nil {
		runtime.UnlockOSThread()
		unix.Close(sp[0])
		unix.Close(sp[1])
		return 0, fmt.Errorf("blocking signals for the closer's fork: %w", err)
	}
	pid, errno := forkCloser(p)
	unix.PthreadSigmask(unix.SIG_SETMASK, &old, nil)
	runtime.UnlockOSThread()
	runtime.KeepAlive(p)
	unix.Close(sp[1])
	if errno != 0 {
		unix.Close(sp[0])
		return 0, fmt.Errorf("forking the closer: %w", errno)
	}

	// The child reports once it has dropped everything it should not
	// hold; EOF without a report means it failed and exited.
	var msg [2]byte
	n, err := readRetry(sp[0], msg[:])
	if err != nil || n != len(msg) || msg[0] != 0 {
		unix.Close(sp[0])
		// Normally it has exited; if not (a read error), it must not
		// hold the sockets any longer.
		unix.Kill(int(pid), unix.SIGKILL)
		var werr error
		if _, err := unix.Wait4(int(pid), nil, 0, nil); err != nil {
			werr = fmt.Errorf("reaping it: %w", err)
		}
		switch {
		case err != nil:
			return 0, errors.Join(fmt.Errorf("reading the closer's report: %w", err), werr)
		case n == len(msg):
			return 0, errors.Join(fmt.Errorf("the closer failed at step %d: %w", msg[0], syscall.Errno(msg[1])), werr)
		default:
			return 0, errors.Join(errors.New("the closer exited without reporting"), werr)
		}
	}
	// sp[0] stays open (close-on-exec) until this process exits: that EOF
	// tells the closer to go on.
	return int(pid), nil
}

// readRetry reads once from fd, retrying on EINTR.
func readRetry(fd int, b []byte) (int, error) {
	for {
		n, err := unix.Read(fd, b)
		if err != unix.EINTR {
			return n, err
		}
	}
}

// descriptorLimit is the highest descriptor number this process can have.
func descriptorLimit() uintptr {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == unix.RLIM_INFINITY || rl.Cur > 1<<20 {
		return 1 << 20
	}
	return uintptr(rl.Cur)
}

// forkCloser forks; in the parent it returns the child's PID. The child
// arranges its descriptors as p says, reports on p.sock, waits for EOF on
// it and exits: it never returns. It must stay nosplit and make only raw
// system calls (see the top of this file); its variables are declared
// before the fork so that none needs the heap.
//
//go:noinline
//go:nosplit
//go:norace
//go:nocheckptr
func forkCloser(p *closerPlan) (pid uintptr, err syscall.Errno) {
	var (
		r1, null, sock, base, fd uintptr
		i                        int
		e                        syscall.Errno
		step                     byte
	)
	r1, _, e = syscall.RawSyscall6(unix.SYS_CLONE, p.cloneA1, p.cloneA2, 0, 0, 0, 0)
	if e != 0 || r1 != 0 {
		return r1, e
	}

	// The child.
	sock = p.sock
	if _, _, e = syscall.RawSyscall(unix.SYS_SETSID, 0, 0, 0); e != 0 {
		step = stepSetsid
		goto fail
	}
	// Everything to keep first moves to base and above, so that placing
	// it on 0..base-1 overwrites nothing still needed.
	base = uintptr(4 + len(p.fds))
	r1, _, e = syscall.RawSyscall6(unix.SYS_OPENAT, atFDCWD, uintptr(unsafe.Pointer(&devNull[0])), unix.O_RDWR, 0, 0, 0)
	if e != 0 {
		step = stepDevNull
		goto fail
	}
	if null, _, e = syscall.RawSyscall(unix.SYS_FCNTL, r1, unix.F_DUPFD, base); e != 0 {
		step = stepMove
		goto fail
	}
	if sock, _, e = syscall.RawSyscall(unix.SYS_FCNTL, p.sock, unix.F_DUPFD, base); e != 0 {
		sock = p.sock
		step = stepMove
		goto fail
	}
	for i = 0; i < len(p.fds); i++ {
		if p.moved[i], _, e = syscall.RawSyscall(unix.SYS_FCNTL, p.fds[i], unix.F_DUPFD, base); e != 0 {
			step = stepMove
			goto fail
		}
	}
	for fd = 0; fd < 3; fd++ {
		if _, _, e = syscall.RawSyscall(unix.SYS_DUP3, null, fd, 0); e != 0 {
			step = stepPlace
			goto fail
		}
	}
	if _, _, e = syscall.RawSyscall(unix.SYS_DUP3, sock, 3, 0); e != 0 {
		step = stepPlace
		goto fail
	}
	sock = 3
	for i = 0; i < len(p.moved); i++ {
		if _, _, e = syscall.RawSyscall(unix.SYS_DUP3, p.moved[i], uintptr(4+i), 0); e != 0 {
			step = stepPlace
			goto fail
		}
	}
	if _, _, e = syscall.RawSyscall(unix.SYS_CLOSE_RANGE, base, ^uintptr(0), 0); e == unix.ENOSYS {
		for fd = base; fd <= p.limit; fd++ {
			syscall.RawSyscall(unix.SYS_CLOSE, fd, 0, 0)
		}
	} else if e != 0 {
		step = stepCloseRest
		goto fail
	}

	syscall.RawSyscall(unix.SYS_WRITE, sock, uintptr(unsafe.Pointer(&p.report[0])), uintptr(len(p.report)))
	for {
		// POLLIN or POLLHUP: EOF, the parent has exited; 0: the
		// bounded wait is over. Only EINTR (a stop and continue) waits
		// on, for the time left (ppoll updates the timeout).
		_, _, e = syscall.RawSyscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&p.poll)), 1, uintptr(unsafe.Pointer(&p.timeout)), 0, 0, 0)
		if e != unix.EINTR {
			break
		}
	}
	// closerLinger more (see there); an interrupted sleep just ends early.
	syscall.RawSyscall(unix.SYS_NANOSLEEP, uintptr(unsafe.Pointer(&p.linger)), 0, 0)
	syscall.RawSyscall(unix.SYS_EXIT_GROUP, 0, 0, 0)

fail:
	p.report[0], p.report[1] = step, byte(e)
	syscall.RawSyscall(unix.SYS_WRITE, sock, uintptr(unsafe.Pointer(&p.report[0])), uintptr(len(p.report)))
	for {
		syscall.RawSyscall(unix.SYS_EXIT_GROUP, 1, 0, 0)
	}
}
