package nft

import (
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Why a short-lived process should not close its own nftables sockets
//
// When the last reference to a bound NETLINK_NETFILTER socket goes away, the
// kernel's NETLINK_URELEASE notifier in nf_tables (nft_rcv_nl_event) flushes
// the namespace's pending transaction-destroy work, and that work starts
// with synchronize_rcu(). Every successful commit queues such work, so a
// process that changed nftables and then closes its sockets, or exits with
// them open (exit closes them), waits for an RCU grace period: 8–20 ms,
// against ~0.6 ms for the change itself. No socket option or usage pattern
// avoids it: it is not tied to NETLINK_EXT_ACK/CAP_ACK, to batches or to
// multicast subscriptions, only to a bound socket being released while the
// destroy work is pending (since Linux 6.10 the flush is unconditional).
//
// Detach and HandOff let a plugin give its sockets to a detached helper
// process that holds the last references: the plugin exits at once and the
// helper pays the wait where no runtime is waiting for it.

// changed records that this process asked the kernel to change nftables,
// lastChange when it last did (Unix nanoseconds).
var (
	changed    atomic.Bool
	lastChange atomic.Int64
)

// markChanged is called by every operation that may commit a change.
func markChanged() {
	lastChange.Store(time.Now().UnixNano())
	changed.Store(true)
}

// settled is the age beyond which a change has almost certainly been
// released by the kernel (an RCU grace period takes 8–20 ms), so closing the
// sockets costs less than a closer would (ForkCloser's CLONE_VM closer: an
// exit with the hand-off takes ~0.42 ms from last output to reaping against
// ~0.36 ms for a plain Go exit, plus the closer's own CPU). A bridge or ptp
// DEL, whose veth teardown takes ~20 ms after its nftables change, usually
// gets here.
const settled = 25 * time.Millisecond

// Changed reports whether this process has made (or tried to make) an
// nftables change through this package, so that closing its nftables
// sockets would wait for the kernel (see Detach).
func Changed() bool { return changed.Load() }

// Detach returns duplicates (close-on-exec) of this process's open
// NETLINK_NETFILTER sockets (its nftables and conntrack sockets, whoever
// opened them) if it has made an nftables change since the last Detach, and
// nil otherwise. The caller passes them to a helper process, closes the
// duplicates, and eventually exits: the helper, which must hold them until
// this process is gone, then holds the last references, and the kernel's
// wait on their release (see above) happens there.
//
// They are raw descriptors on purpose: wrapping one in an os.File and
// passing it through os/exec would switch the socket, shared with the
// netlink connection still open here, to blocking mode.
func Detach() ([]int, error) {
	if !changed.Swap(false) {
		return nil, nil
	}
	all, err := openDescriptors()
	if err != nil {
		return nil, fmt.Errorf("listing open descriptors: %w", err)
	}
	// Every socket is found before the first duplicate is made: a
	// duplicate may take a number still to be visited and must not be
	// duplicated again.
	var socks []int
	for _, fd := range all {
		if isNetfilterSocket(fd) {
			socks = append(socks, fd)
		}
	}
	var fds []int
	var errs []error
	for _, fd := range socks {
		dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 3)
		if err != nil {
			errs = append(errs, fmt.Errorf("duplicating descriptor %d: %w", fd, err))
			continue
		}
		fds = append(fds, dup)
	}
	return fds, errors.Join(errs...)
}

var handOff atomic.Pointer[func(fds []int) error]

// SetHandOff installs f as the way this process passes detached sockets to
// a helper (knit-plugin installs one from init). f receives Detach's
// descriptors, must close them before returning, and must not wait for the
// helper.
func SetHandOff(f func(fds []int) error) { handOff.Store(&f) }

// HandOff detaches this process's netfilter sockets and passes them to the
// installed helper, if it changed nftables and a helper is installed; it
// does nothing otherwise. knit-plugin calls it at exit, after the answer is
// written; a plugin done with nftables may call it earlier, so that
// starting the helper overlaps work still to come. Later changes are handed
// off again by the next call. Errors only mean the
// process will wait for the kernel at exit.
//
// A change older than settled is not handed off: its wait is over or
// nearly so, and a closer would cost more than it saves.
func HandOff() error {
	f := handOff.Load()
	if f == nil {
		return nil
	}
	if time.Since(time.Unix(0, lastChange.Load())) >= settled {
		changed.Store(false)
		return nil
	}
	fds, err := Detach()
	if len(fds) == 0 {
		return err
	}
	return errors.Join(err, (*f)(fds))
}

// isNetfilterSocket reports whether fd is an open NETLINK_NETFILTER socket.
// The directory listing itself (and anything closed since) fails the test.
// openDescriptors lists this process's open descriptors from /proc/self/fd
// with raw system calls: os.ReadDir would add an os.File's set-up (five
// system calls and a refused epoll registration) and a sort.
func openDescriptors() ([]int, error) {
	dir, err := unix.Open("/proc/self/fd", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(dir)
	var fds []int
	buf := make([]byte, 4096)
	for {
		n, err := unix.ReadDirent(dir, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return fds, nil
		}
		_, _, names := unix.ParseDirent(buf[:n], -1, nil)
		for _, name := range names {
			// The listing's own descriptor is among them; it is no socket.
			if fd, err := strconv.Atoi(name); err == nil && fd != dir {
				fds = append(fds, fd)
			}
		}
	}
}

func isNetfilterSocket(fd int) bool {
	if fd < 3 {
		return false
	}
	dom, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil || dom != unix.AF_NETLINK {
		return false
	}
	proto, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
	return err == nil && proto == unix.NETLINK_NETFILTER
}
