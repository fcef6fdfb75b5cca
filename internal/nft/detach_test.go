package nft

import (
	"os"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestDetach: after a change, Detach returns duplicates of the process's
// netfilter sockets (the Masq's two among them) and resets; the Masq keeps
// working on its own descriptors; HandOff passes them to the installed
// helper after a recent change, and nothing without one or after a settled
// one.
func TestDetach(t *testing.T) {
	m, _ := newTestMasq(t)
	o := Owner{Network: "detach", ContainerID: "c1", IfName: "eth0"}
	addrs := cidrs(t, "10.96.0.2/24")
	if err := m.Add(o, addrs); err != nil {
		t.Fatal(err)
	}
	if !Changed() {
		t.Fatal("Changed() = false after Add")
	}
	// Add needs no lookup socket; Check opens it.
	if err := m.Check(o, addrs); err != nil {
		t.Fatal(err)
	}
	fds, err := Detach()
	if err != nil {
		t.Fatal(err)
	}
	if len(fds) < 2 {
		t.Fatalf("Detach returned %v; want at least the Masq's nftables and lookup sockets", fds)
	}
	for _, fd := range fds {
		if !isNetfilterSocket(fd) {
			t.Errorf("descriptor %d is not a netfilter socket", fd)
		}
		if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil || fl&unix.FD_CLOEXEC == 0 {
			t.Errorf("descriptor %d is not close-on-exec (flags %#x, %v)", fd, fl, err)
		}
		unix.Close(fd)
	}
	if err := m.Check(o, addrs); err != nil {
		t.Fatalf("Check after Detach: %v", err)
	}

	var got []int
	SetHandOff(func(fds []int) error {
		got = append(got, fds...)
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil
	})
	t.Cleanup(func() { handOff.Store(nil) })
	if err := HandOff(); err != nil || got != nil {
		t.Fatalf("HandOff with no change since Detach passed %v (%v); want nothing", got, err)
	}
	if err := m.Add(o, addrs); err != nil {
		t.Fatal(err)
	}
	// A settled change is not handed off (a slow machine must not turn
	// the next step into this one, so the age is set explicitly).
	lastChange.Store(time.Now().Add(-settled).UnixNano())
	if err := HandOff(); err != nil || got != nil || Changed() {
		t.Fatalf("HandOff of a settled change passed %v (%v), Changed %v; want nothing, false", got, err, Changed())
	}
	if err := m.Del(o, addrs); err != nil {
		t.Fatal(err)
	}
	lastChange.Store(time.Now().UnixNano())
	if err := HandOff(); err != nil || len(got) < 2 {
		t.Fatalf("HandOff after Del passed %v (%v); want the sockets", got, err)
	}
}

// TestConntrackHandleKeptForHandOff: with a closer installed, the UDP
// conntrack flush leaves its netfilter socket open for the hand-off instead
// of paying the kernel's wait on closing it; without one it closes it.
func TestConntrackHandleKeptForHandOff(t *testing.T) {
	_, fd := testNS(t, "nftct")
	udp := []PortMapping{{HostPort: 5353, ContainerPort: 53, Protocol: "udp"}}
	count := func() int {
		handedOffMu.Lock()
		defer handedOffMu.Unlock()
		return len(handedOff)
	}
	before := count()
	if err := FlushUDPConntrack(fd, udp); err != nil {
		t.Skipf("no conntrack netlink here: %v", err)
	}
	if n := count(); n != before {
		t.Fatalf("without a closer the flush kept its handle (%d kept, was %d)", n, before)
	}
	SetHandOff(func(fds []int) error { return nil })
	t.Cleanup(func() { handOff.Store(nil) })
	if err := FlushUDPConntrack(fd, udp); err != nil {
		t.Fatal(err)
	}
	handedOffMu.Lock()
	defer handedOffMu.Unlock()
	if len(handedOff) != before+1 {
		t.Fatalf("with a closer installed the flush kept %d handles, want %d", len(handedOff), before+1)
	}
	handedOff[before].Close()
	handedOff = handedOff[:before]
}

// TestDetachOneDuplicateEach: Detach duplicates each netfilter descriptor
// once, also when a duplicate takes a free number that the (textually
// sorted) listing of /proc/self/fd visits later: here the socket is on
// 1000 and the lowest free number is made 30 ("1000" < "30").
func TestDetachOneDuplicateEach(t *testing.T) {
	var filler []int
	t.Cleanup(func() {
		for _, fd := range filler {
			unix.Close(fd)
		}
	})
	for {
		fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		if fd >= 30 {
			unix.Close(fd)
			if fd > 30 {
				t.Skipf("the lowest free descriptor is %d, the test needs 30 or less", fd)
			}
			break
		}
		filler = append(filler, fd)
	}
	s, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(s)
	if _, err := unix.FcntlInt(1000, unix.F_GETFD, 0); err != unix.EBADF {
		t.Skip("descriptor 1000 is in use")
	}
	if err := unix.Dup3(s, 1000, unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(1000)
	unix.Close(s)

	var before int
	ents, _ := os.ReadDir("/proc/self/fd")
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && isNetfilterSocket(fd) {
			before++
		}
	}
	markChanged()
	fds, err := Detach()
	for _, fd := range fds {
		unix.Close(fd)
	}
	if err != nil || len(fds) != before {
		t.Fatalf("Detach returned %d descriptors (%v) for %d netfilter descriptors; want one each", len(fds), err, before)
	}
}

// openDescriptors lists exactly the open descriptors: a new one appears, a
// closed one is gone, and the listing's own descriptor is never reported.
func TestOpenDescriptors(t *testing.T) {
	fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	has := func(want int) bool {
		t.Helper()
		fds, err := openDescriptors()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fds {
			if f == want {
				return true
			}
		}
		return false
	}
	if !has(fd) || !has(0) {
		t.Fatalf("descriptors 0 and %d are open but not listed", fd)
	}
	unix.Close(fd)
	if has(fd) {
		t.Fatalf("descriptor %d was closed but is still listed", fd)
	}
}
