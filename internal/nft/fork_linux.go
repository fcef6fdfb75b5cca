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
// ForkCloser runs the closer as a clone of this process that makes nothing
// but raw system calls, as the child of a fork does in package syscall
// between fork and exec, and never execs. Compared with exec'ing a Go
// binary it saves the plugin the vfork-until-exec wait and the machine the
// new program's start-up (~3 ms of CPU): the child's whole life is about
// fifteen system calls and one blocking poll.
//
// Sharing the memory. On amd64 and arm64 the child is created with
// clone(CLONE_VM|SIGCHLD) on a stack of its own (cloneVM, in
// fork_linux_<arch>.s): a separate process (own descriptor table, signal
// handlers, session) in this process's address space. Nothing is copied,
// so the clone costs a quarter of a fork of the 6-8 MB plugin (no page
// tables to copy, no copy-on-write faults in this process afterwards), and,
// because the child still holds the address space when the plugin exits,
// the plugin's exit no longer tears it down (exit_mmap): the closer does,
// when it exits, off the runtime's critical path. Measured from a
// plugin-like process's last output to its reaping (one masquerade change,
// then HandOff and exit; interleaved, n=80): 1.07 ms median (p90 1.61)
// with the plain fork, 0.42 ms (p90 0.66) with the shared clone, about
// what the same process's exit costs without any change (0.35 ms); bridge
// + portmap ADD through cnitool (n=200, interleaved): 19.3 → 18.2 ms
// median. Everywhere else, and if that clone fails (EINVAL, as under
// qemu-user; a seccomp filter, ...), the child is a plain fork (clone with
// only SIGCHLD: forkCloser) that runs the same code on its copy of the
// forking goroutine's stack.
//
// What the child may do. It is one thread, running alongside a Go runtime
// it cannot take part in: the runtime's other threads, signal handling,
// scheduler and allocator are not its own, and with CLONE_VM it shares
// their memory. So it runs one function, closerChild, marked nosplit (no
// stack growth check, which could call morestack), norace (no
// race-detector calls) and nocheckptr, that calls only
// syscall.RawSyscall/RawSyscall6 (nosplit and norace themselves, calling no
// runtime code), and writes only its own locals: not one byte of
// Go-managed memory, so no pointer write (and no write barrier) either. It
// reads the plan, computed before the clone, only until it reports: what it
// needs afterwards (its report socket's number, the poll set, ppoll's
// timeout, which the kernel writes, and the linger) are locals, because
// once the report is read ForkCloser returns and the plan may be freed.
// cloneVM calls it through its func value, straight into its code: the
// ABI0 wrapper that an assembly reference to the symbol would call is
// instrumented in race builds (racefuncenter/racefuncexit). (A
// coverage-instrumented build adds counter increments to closerChild:
// plain stores to a counter array, harmless, and not in real builds.)
//
// Its stack. cloneVM's child starts on an anonymous 64 KiB mapping made
// for it (closerStackSize); the forking thread's stack, shared, is not
// touched. closerChild and everything it calls are nosplit, and the linker
// checks that such a chain fits in its nosplit limit (under 1 KiB; more in
// race builds): closerChild's frame is 216 bytes on amd64 (240 with -race)
// and 256 on arm64, so the stack cannot overflow and needs no guard page.
// When closerChild returns its exit status, the assembly unmaps the stack,
// keeping what it still needs in registers, and calls exit_group: a
// long-lived caller leaks nothing, unless the closer is killed (then one
// 64 KiB mapping stays; the parent cannot unmap it after reaping, as the
// address may have been reused by then).
//
// Thread-local storage. Without CLONE_SETTLS the child keeps the forking
// thread's FS base (TPIDR_EL0 on arm64), and its g register (R14, R28)
// still holds the forking goroutine's g. Only nosplit, norace code runs,
// which never looks at either (no stack check, no morestack, no race or
// checkptr calls); closerChild is noinline so that this stays true of
// exactly one function.
//
// Signals. All signals are blocked on the forking thread before the
// clone, so the child starts with all of them blocked and no Go signal
// handler can run in it (SIGKILL and SIGSTOP still act); the parent
// restores its mask right after. Without CLONE_SIGHAND the child has its
// own copy of the handler table, which nothing uses.
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
// wait happens, and, when it shares the plugin's address space, the last
// reference to that.
//
// Who reaps it. While the parent lives, the child is the parent's: a
// long-lived caller must reap it (wait4 on the returned PID) once it has
// exited. When the parent exits, the child is reparented to the nearest
// subreaper or to init, like any daemonising helper. init reaps it. A
// runtime that made itself a child subreaper reaps it if it waits for any
// child (a wait4(-1) reaper loop, as in containerd's shim); one that only
// waits for the PIDs it started leaves it a zombie until the runtime exits.

// closerPlan is everything the child needs, computed before the clone:
// after it the child may not allocate, grow its stack, call the Go runtime
// or write to Go memory, and once it has reported it may not read the plan.
type closerPlan struct {
	cloneA1, cloneA2 uintptr       // forkCloser's first two clone arguments (s390x swaps them)
	sock             uintptr       // the child's end of the report socket
	fds              []uintptr     // the sockets to hold, at any numbers
	stage            uintptr       // first of the free-to-overwrite numbers they are staged on
	limit            uintptr       // highest descriptor to close if close_range is missing
	timeout          unix.Timespec // closerMaxWait
	linger           unix.Timespec // closerLinger
}

// Steps the child reports when one fails.
const (
	stepSetsid = iota + 1
	stepStage
	stepDevNull
	stepPlace
	stepCloseRest
)

var stepNames = [...]string{
	stepSetsid:    "setsid",
	stepStage:     "staging the descriptors to keep",
	stepDevNull:   "opening /dev/null",
	stepPlace:     "placing the descriptors on 0 and up",
	stepCloseRest: "closing the other descriptors",
}

// closerStackSize is the size of cloneVM's child's stack (see above).
const closerStackSize = 64 << 10

// atFDCWD is AT_FDCWD (-100) as a system call argument.
const atFDCWD = ^uintptr(99)

var devNull = [...]byte{'/', 'd', 'e', 'v', '/', 'n', 'u', 'l', 'l', 0}

// ForkCloser hands fds (closed in this process either way) to a closer
// cloned from this process (see above) and returns its PID once the closer
// holds them and nothing else of this process. The closer holds them until
// this process exits (at most closerMaxWait), then exits. It leaves the
// sockets' mode alone (see Detach). An error means the sockets are not
// handed off (this process will wait for the kernel at exit).
func ForkCloser(fds []int) (int, error) {
	c, err := startCloser(fds, haveCloneVM)
	return c.pid, err
}

// closer describes a started closer: its PID and, if it shares this
// process's memory, its stack.
type closer struct {
	pid   int
	stack uintptr // 0 for a plain fork
}

// startCloser is ForkCloser, trying the clone that shares memory first if
// vm is set.
func startCloser(fds []int, vm bool) (closer, error) {
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return closer{}, fmt.Errorf("creating the closer's report socket: %w", err)
	}
	p := &closerPlan{
		cloneA1: uintptr(unix.SIGCHLD),
		sock:    uintptr(sp[1]),
		fds:     make([]uintptr, len(fds)),
		limit:   descriptorLimit(),
		timeout: unix.NsecToTimespec(closerMaxWait.Nanoseconds()),
		linger:  unix.NsecToTimespec(closerLinger.Nanoseconds()),
	}
	if runtime.GOARCH == "s390x" {
		p.cloneA1, p.cloneA2 = 0, uintptr(unix.SIGCHLD)
	}
	// The staging numbers are above every descriptor the child moves and
	// above the places they move to, so staging overwrites nothing still
	// needed and placing overwrites nothing staged.
	p.stage = max(p.sock+1, uintptr(4+len(fds)))
	for i, fd := range fds {
		p.fds[i] = uintptr(fd)
		p.stage = max(p.stage, uintptr(fd)+1)
	}
	var stack unsafe.Pointer
	if vm {
		stack, err = unix.MmapPtr(-1, 0, nil, closerStackSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE|unix.MAP_STACK)
		if err != nil {
			stack = nil
		}
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
		if stack != nil {
			unix.MunmapPtr(stack, closerStackSize)
		}
		return closer{}, fmt.Errorf("blocking signals for the closer's clone: %w", err)
	}
	var c closer
	var pid uintptr
	errno := syscall.ENOSYS
	if stack != nil {
		var e uintptr
		pid, e = cloneVM(unix.CLONE_VM|uintptr(unix.SIGCHLD), uintptr(stack), closerStackSize, p, closerChild)
		if errno = syscall.Errno(e); errno != 0 {
			// No child: the stack is this process's to free. The
			// plain fork below may still work.
			unix.MunmapPtr(stack, closerStackSize)
		} else {
			c.stack = uintptr(stack)
		}
	}
	if errno != 0 {
		pid, errno = forkCloser(p)
	}
	unix.PthreadSigmask(unix.SIG_SETMASK, &old, nil)
	runtime.UnlockOSThread()
	unix.Close(sp[1])
	if errno != 0 {
		unix.Close(sp[0])
		return closer{}, fmt.Errorf("forking the closer: %w", errno)
	}
	c.pid = int(pid)

	// The child reports once it has dropped everything it should not
	// hold; EOF without a report means it failed and exited. It reads the
	// plan until then.
	var msg [2]byte
	n, err := readRetry(sp[0], msg[:])
	runtime.KeepAlive(p)
	if err != nil || n != len(msg) || msg[0] != 0 {
		unix.Close(sp[0])
		// After a report or EOF it exits by itself (and frees its
		// stack); after a read error it must not hold the sockets any
		// longer.
		if err != nil {
			unix.Kill(c.pid, unix.SIGKILL)
		}
		var werr error
		if _, err := unix.Wait4(c.pid, nil, 0, nil); err != nil {
			werr = fmt.Errorf("reaping it: %w", err)
		}
		switch {
		case err != nil:
			return closer{}, errors.Join(fmt.Errorf("reading the closer's report: %w", err), werr)
		case n == len(msg):
			step := fmt.Sprintf("step %d", msg[0])
			if int(msg[0]) < len(stepNames) && stepNames[msg[0]] != "" {
				step = stepNames[msg[0]]
			}
			return closer{}, errors.Join(fmt.Errorf("the closer failed %s: %w", step, syscall.Errno(msg[1])), werr)
		default:
			return closer{}, errors.Join(errors.New("the closer exited without reporting"), werr)
		}
	}
	// sp[0] stays open (close-on-exec) until this process exits: that EOF
	// tells the closer to go on.
	return c, nil
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
// runs closerChild on its copy of this stack and exits with its status: it
// never returns. It must stay nosplit and make only raw system calls (see
// the top of this file).
//
//go:noinline
//go:nosplit
//go:norace
//go:nocheckptr
func forkCloser(p *closerPlan) (pid uintptr, err syscall.Errno) {
	r1, _, e := syscall.RawSyscall6(unix.SYS_CLONE, p.cloneA1, p.cloneA2, 0, 0, 0, 0)
	if e != 0 || r1 != 0 {
		return r1, e
	}
	r1 = closerChild(p)
	for {
		syscall.RawSyscall(unix.SYS_EXIT_GROUP, r1, 0, 0)
	}
}

// closerChild is the child's whole work (see the top of this file): it
// arranges its descriptors as p says, reports on p.sock, waits for EOF on
// it and lingers, and returns the exit status, 0 or 1 after a failed step
// (reported). It runs on a stack of its own or on a copy of the parent's,
// possibly sharing memory with the parent's Go runtime: it must stay
// nosplit, make only raw system calls, write nothing but its locals and
// read p only until it reports.
//
//go:noinline
//go:nosplit
//go:norace
//go:nocheckptr
func closerChild(p *closerPlan) uintptr {
	var (
		sock, stage, limit, null, n, i, fd uintptr
		timeout, linger                    unix.Timespec
		poll                               unix.PollFd
		report                             [2]byte
		e                                  syscall.Errno
	)
	sock, stage, limit, n = p.sock, p.stage, p.limit, uintptr(len(p.fds))
	timeout, linger = p.timeout, p.linger
	if _, _, e = syscall.RawSyscall(unix.SYS_SETSID, 0, 0, 0); e != 0 {
		report[0] = stepSetsid
		goto fail
	}
	// Everything to keep first goes to stage and up (n sockets, then the
	// report socket), above all of it, so that placing it on 0..3+n
	// overwrites nothing still needed.
	for j, fd := range p.fds {
		if _, _, e = syscall.RawSyscall(unix.SYS_DUP3, fd, stage+uintptr(j), 0); e != 0 {
			report[0] = stepStage
			goto fail
		}
	}
	if _, _, e = syscall.RawSyscall(unix.SYS_DUP3, sock, stage+n, 0); e != 0 {
		report[0] = stepStage
		goto fail
	}
	sock = stage + n
	// /dev/null takes the lowest free number: not a staged one, maybe one
	// of 0..3+n, which is overwritten only once it has been copied to
	// 0..2 (dup3 refuses to copy a descriptor onto itself).
	null, _, e = syscall.RawSyscall6(unix.SYS_OPENAT, atFDCWD, uintptr(unsafe.Pointer(&devNull[0])), unix.O_RDWR, 0, 0, 0)
	if e != 0 {
		report[0] = stepDevNull
		goto fail
	}
	for fd = 0; fd < 3; fd++ {
		if fd == null {
			continue
		}
		if _, _, e = syscall.RawSyscall(unix.SYS_DUP3, null, fd, 0); e != 0 {
			report[0] = stepPlace
			goto fail
		}
	}
	if _, _, e = syscall.RawSyscall(unix.SYS_DUP3, sock, 3, 0); e != 0 {
		report[0] = stepPlace
		goto fail
	}
	sock = 3
	for i = 0; i < n; i++ {
		if _, _, e = syscall.RawSyscall(unix.SYS_DUP3, stage+i, 4+i, 0); e != 0 {
			report[0] = stepPlace
			goto fail
		}
	}
	if _, _, e = syscall.RawSyscall(unix.SYS_CLOSE_RANGE, 4+n, ^uintptr(0), 0); e == unix.ENOSYS {
		for fd = 4 + n; fd <= limit; fd++ {
			syscall.RawSyscall(unix.SYS_CLOSE, fd, 0, 0)
		}
	} else if e != 0 {
		report[0] = stepCloseRest
		goto fail
	}

	// Reported, the plan is not to be read any more.
	syscall.RawSyscall(unix.SYS_WRITE, sock, uintptr(unsafe.Pointer(&report[0])), uintptr(len(report)))
	poll.Fd, poll.Events = int32(sock), unix.POLLIN
	for {
		// POLLIN or POLLHUP: EOF, the parent has exited; 0: the
		// bounded wait is over. Only EINTR (a stop and continue) waits
		// on, for the time left (ppoll updates the timeout).
		_, _, e = syscall.RawSyscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&poll)), 1, uintptr(unsafe.Pointer(&timeout)), 0, 0, 0)
		if e != unix.EINTR {
			break
		}
	}
	// closerLinger more (see there); an interrupted sleep just ends early.
	syscall.RawSyscall(unix.SYS_NANOSLEEP, uintptr(unsafe.Pointer(&linger)), 0, 0)
	return 0

fail:
	report[1] = byte(e)
	syscall.RawSyscall(unix.SYS_WRITE, sock, uintptr(unsafe.Pointer(&report[0])), uintptr(len(report)))
	return 1
}
