package nft

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"unsafe"

	"golang.org/x/sys/unix"
)

// startFunc starts a closer, as ForkCloser does.
type startFunc func(fds []int) (int, error)

// closerPaths are the ways to start a closer: the clone sharing this
// process's memory where this architecture has it, and the plain fork.
func closerPaths() []struct {
	name string
	vm   bool
} {
	paths := []struct {
		name string
		vm   bool
	}{{"fork", false}}
	if haveCloneVM {
		paths = append(paths, struct {
			name string
			vm   bool
		}{"clone-vm", true})
	}
	return paths
}

// forEachPath runs test on every path, with a start function that checks
// the path was taken.
func forEachPath(t *testing.T, test func(*testing.T, startFunc)) {
	for _, path := range closerPaths() {
		t.Run(path.name, func(t *testing.T) {
			test(t, func(fds []int) (int, error) {
				c, err := startCloser(fds, path.vm)
				if err == nil && (c.stack != 0) != path.vm {
					t.Errorf("startCloser(vm=%v) started a closer with stack %#x", path.vm, c.stack)
				}
				return c.pid, err
			})
		})
	}
}

// closerFDs lists pid's open descriptors and their targets.
func closerFDs(t *testing.T, pid int) map[int]string {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("listing the closer's descriptors: %v", err)
	}
	out := map[int]string{}
	for _, e := range ents {
		fd, _ := strconv.Atoi(e.Name())
		out[fd], _ = os.Readlink(filepath.Join(dir, e.Name()))
	}
	return out
}

// reap kills the closer if it still runs and reaps it (it is this test
// process's child while the process lives).
func reap(pid int) {
	unix.Kill(pid, unix.SIGKILL)
	unix.Wait4(pid, nil, 0, nil)
}

// pipes returns n pipes' descriptors (read, write, read, ...), closed at
// the end of the test, and their "pipe:[N]" targets.
func pipes(t *testing.T, n int, flags int) []int {
	t.Helper()
	var fds []int
	for range n {
		var p [2]int
		if err := unix.Pipe2(p[:], flags); err != nil {
			t.Fatal(err)
		}
		fds = append(fds, p[0], p[1])
	}
	t.Cleanup(func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	})
	return fds
}

// TestForkCloserLayout: the closer holds exactly /dev/null on 0-2, its
// report socket on 3 and the handed descriptors on 4 and up in the order
// given (here the reverse of how they were opened, so that moving them
// into place crosses over), is a single thread in a session of its own, and
// closes the descriptors in this process.
func TestForkCloserLayout(t *testing.T) {
	forEachPath(t, testForkCloserLayout)
}

func testForkCloserLayout(t *testing.T, start startFunc) {
	orig := pipes(t, 20, unix.O_CLOEXEC)
	var fds []int
	var want []string
	for _, fd := range slices.Backward(orig) {
		dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 3)
		if err != nil {
			t.Fatal(err)
		}
		fds = append(fds, dup)
		w, _ := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
		want = append(want, w)
	}
	pid, err := start(fds)
	if err != nil {
		t.Fatal(err)
	}
	defer reap(pid)
	for _, fd := range fds {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != unix.EBADF {
			t.Errorf("descriptor %d is still open here after ForkCloser", fd)
		}
	}
	got := closerFDs(t, pid)
	if len(got) != 4+len(want) {
		t.Errorf("closer holds %d descriptors, want %d: %v", len(got), 4+len(want), got)
	}
	for fd := range 3 {
		if got[fd] != os.DevNull {
			t.Errorf("closer's fd %d is %q, want %s", fd, got[fd], os.DevNull)
		}
	}
	if !strings.HasPrefix(got[3], "socket:") {
		t.Errorf("closer's fd 3 is %q, want its report socket", got[3])
	}
	for i, w := range want {
		if got[4+i] != w {
			t.Errorf("closer's fd %d is %q, want %q (handed descriptor %d)", 4+i, got[4+i], w, i)
		}
	}
	if sid, err := unix.Getsid(pid); err != nil || sid != pid {
		t.Errorf("closer %d is not in a session of its own (sid %d, %v)", pid, sid, err)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil || !strings.Contains(string(status), "\nThreads:\t1\n") {
		t.Errorf("closer is not one thread: %v\n%s", err, status)
	}
}

// TestForkCloserHoldsNothingElse: right after ForkCloser returns, what this
// process closes is closed: a flock taken here (on a close-on-exec file)
// can be taken by another open file once this process closes its own, and
// a pipe's reader (the pipe not close-on-exec) sees EOF once the writer is
// closed here, while the closer still runs.
func TestForkCloserHoldsNothingElse(t *testing.T) {
	forEachPath(t, testForkCloserHoldsNothingElse)
}

func testForkCloserHoldsNothingElse(t *testing.T, start startFunc) {
	path := filepath.Join(t.TempDir(), "lock")
	lockFD, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(lockFD, unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	p := pipes(t, 1, 0)
	held := pipes(t, 1, unix.O_CLOEXEC)
	dup, err := unix.FcntlInt(uintptr(held[0]), unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := start([]int{dup})
	if err != nil {
		t.Fatal(err)
	}
	defer reap(pid)

	unix.Close(lockFD)
	other, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(other)
	if err := unix.Flock(other, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Errorf("the file locked before the hand-off is still locked after closing it here: %v (the closer holds it)", err)
	}
	unix.Close(p[1])
	if err := unix.SetNonblock(p[0], true); err != nil {
		t.Fatal(err)
	}
	if n, err := unix.Read(p[0], make([]byte, 1)); n != 0 || err != nil {
		t.Errorf("read from a pipe whose writer was closed here = %d, %v; want EOF (the closer holds the writer)", n, err)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil || !running(pid) {
		t.Fatalf("closer %d is not running any more: %v", pid, err)
	}
}

// TestForkCloserBoundedWait: a closer whose parent never exits gives up
// after closerMaxWait and exits with status 0; its held descriptors are
// released then (the writer of a held pipe disappears), and so is the stack
// of a closer that shared this process's memory.
func TestForkCloserBoundedWait(t *testing.T) {
	old := closerMaxWait
	closerMaxWait = 200 * time.Millisecond
	t.Cleanup(func() { closerMaxWait = old })
	for _, path := range closerPaths() {
		t.Run(path.name, func(t *testing.T) { testForkCloserBoundedWait(t, path.vm) })
	}
}

func testForkCloserBoundedWait(t *testing.T, vm bool) {
	p := pipes(t, 1, unix.O_CLOEXEC)
	dup, err := unix.FcntlInt(uintptr(p[1]), unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		t.Fatal(err)
	}
	c, err := startCloser([]int{dup}, vm)
	if err != nil {
		t.Fatal(err)
	}
	pid := c.pid
	if vm && !mapped(t, c.stack) {
		t.Errorf("the closer's stack at %#x is not mapped while it runs", c.stack)
	}
	unix.Close(p[1])
	var ws unix.WaitStatus
	done := make(chan error, 1)
	go func() {
		_, err := unix.Wait4(pid, &ws, 0, nil)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil || !ws.Exited() || ws.ExitStatus() != 0 {
			t.Fatalf("closer ended with %v (%v); want exit status 0", ws, err)
		}
	case <-time.After(time.Minute):
		reap(pid)
		t.Fatalf("closer %d still running a minute after its %s bound", pid, closerMaxWait)
	}
	if n, err := unix.Read(p[0], make([]byte, 1)); n != 0 || err != nil {
		t.Errorf("read from the held pipe after the closer's exit = %d, %v; want EOF", n, err)
	}
	if vm && mapped(t, c.stack) {
		t.Errorf("the closer's stack at %#x is still mapped after its exit", c.stack)
	}
}

// TestForkCloserConcurrent: closers forked from several goroutines at once
// each get their own descriptors (run with -race).
func TestForkCloserConcurrent(t *testing.T) {
	forEachPath(t, testForkCloserConcurrent)
}

func testForkCloserConcurrent(t *testing.T, start startFunc) {
	const n = 8
	p := pipes(t, n, unix.O_CLOEXEC)
	var wg sync.WaitGroup
	pids := make([]int, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			dup, err := unix.FcntlInt(uintptr(p[2*i]), unix.F_DUPFD_CLOEXEC, 3)
			if err != nil {
				errs[i] = err
				return
			}
			pids[i], errs[i] = start([]int{dup})
		})
	}
	wg.Wait()
	for i, pid := range pids {
		if errs[i] != nil {
			t.Errorf("closer %d: %v", i, errs[i])
			continue
		}
		want, _ := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", p[2*i]))
		got := closerFDs(t, pid)
		if len(got) != 5 || got[4] != want {
			t.Errorf("closer %d holds %v; want 0-3 and %s on 4", i, got, want)
		}
		reap(pid)
	}
}

// running reports whether pid exists and is not a zombie.
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z'
}

// mapped reports whether addr is in one of this process's mappings.
func mapped(t *testing.T, addr uintptr) bool {
	t.Helper()
	return mappedIn(t, os.Getpid(), addr)
}

// mappedIn reports whether addr is in one of pid's mappings.
func mappedIn(t *testing.T, pid int, addr uintptr) bool {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		t.Fatalf("reading the mappings of %d: %v", pid, err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		span, _, _ := strings.Cut(l, " ")
		lo, hi, ok := strings.Cut(span, "-")
		if !ok {
			continue
		}
		a, err1 := strconv.ParseUint(lo, 16, 64)
		z, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 == nil && err2 == nil && uint64(addr) >= a && uint64(addr) < z {
			return true
		}
	}
	return false
}

// TestForkCloserSharesMemory: on amd64 and arm64 ForkCloser's closer
// shares this process's address space (a mapping made here after it
// started is in its mappings too); the plain fork, forced, does not.
func TestForkCloserSharesMemory(t *testing.T) {
	if runtime.GOARCH == "amd64" || runtime.GOARCH == "arm64" {
		if !haveCloneVM {
			t.Fatalf("no cloneVM on %s", runtime.GOARCH)
		}
	}
	check := func(t *testing.T, pid int, want bool) {
		t.Helper()
		defer reap(pid)
		mem, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Munmap(mem)
		addr := uintptr(unsafe.Pointer(&mem[0]))
		if got := mappedIn(t, pid, addr); got != want {
			t.Errorf("a mapping made here after the closer started is in the closer's mappings: %v, want %v", got, want)
		}
	}
	p := pipes(t, 2, unix.O_CLOEXEC)
	for i, path := range closerPaths() {
		t.Run(path.name, func(t *testing.T) {
			dup, err := unix.FcntlInt(uintptr(p[2*i]), unix.F_DUPFD_CLOEXEC, 3)
			if err != nil {
				t.Fatal(err)
			}
			var pid int
			if path.vm {
				// ForkCloser itself takes this path.
				pid, err = ForkCloser([]int{dup})
			} else {
				var c closer
				c, err = startCloser([]int{dup}, false)
				pid = c.pid
			}
			if err != nil {
				t.Fatal(err)
			}
			check(t, pid, path.vm)
		})
	}
}

// TestForkCloserReportsFailure: a step that fails in the closer (here
// staging a descriptor that is not open) comes back as ForkCloser's error,
// naming the step and the errno, and the closer has exited and been
// reaped.
func TestForkCloserReportsFailure(t *testing.T) {
	forEachPath(t, func(t *testing.T, start startFunc) {
		// A number that is not open (the socket pair's two descriptors
		// and a few duplicates stay well below it).
		const bad = 900
		if _, err := unix.FcntlInt(bad, unix.F_GETFD, 0); err != unix.EBADF {
			t.Skipf("descriptor %d is open here (%v)", bad, err)
		}
		var rl unix.Rlimit
		if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil || rl.Cur < bad+8 {
			t.Skipf("descriptor limit %d too low (%v)", rl.Cur, err)
		}
		p := pipes(t, 1, unix.O_CLOEXEC)
		dup, err := unix.FcntlInt(uintptr(p[0]), unix.F_DUPFD_CLOEXEC, 3)
		if err != nil {
			t.Fatal(err)
		}
		before := children(t)
		pid, err := start([]int{dup, bad})
		if err == nil {
			reap(pid)
			t.Fatal("ForkCloser with a descriptor that is not open succeeded")
		}
		if !strings.Contains(err.Error(), stepNames[stepStage]) || !errors.Is(err, unix.EBADF) {
			t.Errorf("error = %v; want the staging step and EBADF", err)
		}
		if _, err := unix.FcntlInt(uintptr(dup), unix.F_GETFD, 0); err != unix.EBADF {
			t.Errorf("descriptor %d is still open here after a failed ForkCloser", dup)
		}
		for pid := range children(t) {
			if !before[pid] {
				t.Errorf("child %d was left for the caller to reap", pid)
			}
		}
	})
}

// children lists this process's child processes, running or zombies.
func children(t *testing.T) map[int]bool {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]bool{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid ...
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(os.Getpid()) {
			out[pid] = true
		}
	}
	return out
}
