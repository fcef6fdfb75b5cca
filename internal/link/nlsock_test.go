package link

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// fakeKernel is the other end of an nlSocket whose descriptor is one end of
// a datagram socketpair: the test reads the requests and writes the answers
// a kernel might, byte for byte.
type fakeKernel struct {
	t  *testing.T
	fd int
	s  *nlSocket
}

const fakePortID = 4242

func newFakeKernel(t *testing.T, bufSize int) *fakeKernel {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	// A broken executor fails the test in seconds, not after a minute.
	tv := unix.Timeval{Sec: 5}
	for _, fd := range fds {
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			t.Fatal(err)
		}
	}
	s := &nlSocket{fd: fds[0], portid: fakePortID, buf: make([]byte, bufSize)}
	t.Cleanup(func() { s.close(); unix.Close(fds[1]) })
	return &fakeKernel{t: t, fd: fds[1], s: s}
}

// request reads the next request the executor sent.
func (f *fakeKernel) request() unix.NlMsghdr {
	f.t.Helper()
	b := make([]byte, 4096)
	n, err := unix.Read(f.fd, b)
	if err != nil {
		f.t.Fatalf("fake kernel: reading the request: %v", err)
	}
	if n < nlmsgHdrLen {
		f.t.Fatalf("fake kernel: request of %d bytes", n)
	}
	return header(b[:n])
}

// answer sends msgs as one datagram.
func (f *fakeKernel) answer(msgs ...[]byte) {
	f.t.Helper()
	var b []byte
	for _, m := range msgs {
		b = append(b, m...)
	}
	if _, err := unix.Write(f.fd, b); err != nil {
		f.t.Fatalf("fake kernel: answering: %v", err)
	}
}

// nlMsg builds one netlink message (padded to 4 bytes).
func nlMsg(typ, flags uint16, seq, pid uint32, data []byte) []byte {
	b := make([]byte, nlmsgHdrLen, nlmAlign(nlmsgHdrLen+len(data)))
	binary.NativeEndian.PutUint32(b[0:], uint32(nlmsgHdrLen+len(data)))
	binary.NativeEndian.PutUint16(b[4:], typ)
	binary.NativeEndian.PutUint16(b[6:], flags)
	binary.NativeEndian.PutUint32(b[8:], seq)
	binary.NativeEndian.PutUint32(b[12:], pid)
	b = append(b, data...)
	return b[:cap(b)]
}

// errPayload is an NLMSG_ERROR / NLMSG_DONE payload: the code, then (for
// NLMSG_ERROR) the capped request header, then an NLMSGERR_ATTR_MSG.
func errPayload(code int32, withHeader bool, msg string) []byte {
	b := binary.NativeEndian.AppendUint32(nil, uint32(code))
	if withHeader {
		b = append(b, make([]byte, nlmsgHdrLen)...)
	}
	if msg != "" {
		v := append([]byte(msg), 0)
		a := make([]byte, 4, 4+nlmAlign(len(v)))
		binary.NativeEndian.PutUint16(a[0:], uint16(4+len(v)))
		binary.NativeEndian.PutUint16(a[2:], nlmsgerrMsg)
		a = append(a, v...)
		b = append(b, a[:cap(a)]...)
	}
	return b
}

type execResult struct {
	msgs [][]byte
	err  error
}

// run starts req on f's socket and returns where its result arrives.
func (f *fakeKernel) run(req *nl.NetlinkRequest, resType uint16) <-chan execResult {
	c := make(chan execResult, 1)
	go func() {
		m, err := f.s.execute(req, resType)
		c <- execResult{m, err}
	}()
	return c
}

func getLinkReq(flags int) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(unix.RTM_GETLINK, flags)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	return req
}

func TestExecutorAck(t *testing.T) {
	f := newFakeKernel(t, 4096)
	req := nl.NewNetlinkRequest(unix.RTM_SETLINK, unix.NLM_F_ACK)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	c := f.run(req, 0)
	h := f.request()
	if h.Type != unix.RTM_SETLINK || h.Flags&unix.NLM_F_REQUEST == 0 || h.Flags&unix.NLM_F_ACK == 0 {
		t.Fatalf("request header %+v", h)
	}
	f.answer(nlMsg(unix.NLMSG_ERROR, unix.NLM_F_CAPPED, h.Seq, fakePortID, errPayload(0, true, "")))
	if r := <-c; r.err != nil || len(r.msgs) != 0 {
		t.Fatalf("ack: %d messages, %v; want none, nil", len(r.msgs), r.err)
	}
}

// A GET with NLM_F_ACK is answered and then acked: the executor waits for
// the ack, so it is not left for the next request.
func TestExecutorReplyThenAck(t *testing.T) {
	f := newFakeKernel(t, 4096)
	c := f.run(getLinkReq(unix.NLM_F_ACK), unix.RTM_NEWLINK)
	h := f.request()
	f.answer(nlMsg(unix.RTM_NEWLINK, 0, h.Seq, fakePortID, []byte("link")))
	select {
	case r := <-c:
		t.Fatalf("returned before the ack: %v", r.err)
	default:
	}
	f.answer(nlMsg(unix.NLMSG_ERROR, unix.NLM_F_CAPPED, h.Seq, fakePortID, errPayload(0, true, "")))
	r := <-c
	if r.err != nil || len(r.msgs) != 1 || string(r.msgs[0]) != "link" {
		t.Fatalf("got %q, %v; want [link], nil", r.msgs, r.err)
	}
}

func TestExecutorErrno(t *testing.T) {
	f := newFakeKernel(t, 4096)
	c := f.run(getLinkReq(0), unix.RTM_NEWLINK)
	h := f.request()
	f.answer(nlMsg(unix.NLMSG_ERROR, unix.NLM_F_CAPPED|nlmFAckTLVs, h.Seq, fakePortID, errPayload(-int32(unix.ENODEV), true, "no such device here")))
	r := <-c
	if !errors.Is(r.err, unix.ENODEV) || !IsNotFound(r.err) || !strings.Contains(fmt.Sprint(r.err), "no such device here") {
		t.Fatalf("err = %v; want ENODEV with the kernel's message", r.err)
	}
	// Without NLM_F_CAPPED the whole request comes back before the TLVs.
	c = f.run(getLinkReq(0), unix.RTM_NEWLINK)
	h = f.request()
	echoed := nlMsg(unix.RTM_GETLINK, unix.NLM_F_REQUEST, h.Seq, 0, make([]byte, unix.SizeofIfInfomsg))
	code := -int32(unix.EPERM)
	p := append(binary.NativeEndian.AppendUint32(nil, uint32(code)), echoed...)
	p = append(p, errPayload(0, false, "not allowed")[4:]...)
	f.answer(nlMsg(unix.NLMSG_ERROR, nlmFAckTLVs, h.Seq, fakePortID, p))
	r = <-c
	if !errors.Is(r.err, unix.EPERM) || !strings.Contains(fmt.Sprint(r.err), "not allowed") {
		t.Fatalf("err = %v; want EPERM with the kernel's message", r.err)
	}
}

// A dump is read over several datagrams up to NLMSG_DONE; answers of other
// types are left out.
func TestExecutorMultipartDump(t *testing.T) {
	f := newFakeKernel(t, 4096)
	before := f.s.recvs
	c := f.run(getLinkReq(unix.NLM_F_DUMP), unix.RTM_NEWLINK)
	h := f.request()
	for i := 0; i < 3; i++ {
		f.answer(
			nlMsg(unix.RTM_NEWLINK, unix.NLM_F_MULTI, h.Seq, fakePortID, []byte{byte(2 * i)}),
			nlMsg(unix.RTM_NEWADDR, unix.NLM_F_MULTI, h.Seq, fakePortID, []byte{99}),
			nlMsg(unix.RTM_NEWLINK, unix.NLM_F_MULTI, h.Seq, fakePortID, []byte{byte(2*i + 1)}))
	}
	f.answer(nlMsg(unix.NLMSG_DONE, unix.NLM_F_MULTI, h.Seq, fakePortID, errPayload(0, false, "")))
	r := <-c
	if r.err != nil || len(r.msgs) != 6 {
		t.Fatalf("got %d messages, %v; want 6, nil", len(r.msgs), r.err)
	}
	for i, m := range r.msgs {
		if len(m) != 1 || m[0] != byte(i) {
			t.Errorf("message %d = %v", i, m)
		}
	}
	if got := f.s.recvs - before; got != 4 {
		t.Errorf("%d receives; want 4", got)
	}
	// The error a dump ends with comes in NLMSG_DONE.
	c = f.run(getLinkReq(unix.NLM_F_DUMP), unix.RTM_NEWLINK)
	h = f.request()
	f.answer(nlMsg(unix.NLMSG_DONE, unix.NLM_F_MULTI, h.Seq, fakePortID, errPayload(-int32(unix.EINVAL), false, "")))
	if r := <-c; !errors.Is(r.err, unix.EINVAL) {
		t.Fatalf("err = %v; want EINVAL from NLMSG_DONE", r.err)
	}
}

// An interrupted dump returns what it got with nl.ErrDumpInterrupted, which
// Dump retries.
func TestExecutorDumpInterrupted(t *testing.T) {
	f := newFakeKernel(t, 4096)
	go func() {
		for i := 0; i < 2; i++ {
			h := f.request()
			flags := uint16(unix.NLM_F_MULTI)
			if i == 0 {
				flags |= nlmFDumpIntr
			}
			f.answer(nlMsg(unix.RTM_NEWLINK, flags, h.Seq, fakePortID, []byte{byte(i)}),
				nlMsg(unix.NLMSG_DONE, flags, h.Seq, fakePortID, errPayload(0, false, "")))
		}
	}()
	calls := 0
	msgs, err := Dump(func() ([][]byte, error) {
		calls++
		m, err := f.s.execute(getLinkReq(unix.NLM_F_DUMP), unix.RTM_NEWLINK)
		if calls == 1 && (!errors.Is(err, netlink.ErrDumpInterrupted) || len(m) != 1) {
			t.Errorf("first dump: %d messages, %v; want 1 and ErrDumpInterrupted", len(m), err)
		}
		return m, err
	})
	if err != nil || calls != 2 || len(msgs) != 1 || msgs[0][0] != 1 {
		t.Fatalf("Dump: %v, %v after %d calls; want the second dump's answer", msgs, err, calls)
	}
}

// Answers to another sequence number (an earlier request that failed or
// timed out) or another port are skipped, as is anything malformed refused.
func TestExecutorSkipsOtherSeq(t *testing.T) {
	f := newFakeKernel(t, 4096)
	c := f.run(getLinkReq(0), unix.RTM_NEWLINK)
	h := f.request()
	f.answer(nlMsg(unix.RTM_NEWLINK, 0, h.Seq-1, fakePortID, []byte("stale")))
	f.answer(nlMsg(unix.RTM_NEWLINK, unix.NLM_F_MULTI, h.Seq+7, fakePortID, []byte("other")),
		nlMsg(unix.RTM_NEWLINK, 0, h.Seq, fakePortID+1, []byte("other port")),
		nlMsg(unix.RTM_NEWLINK, 0, h.Seq, fakePortID, []byte("mine")))
	r := <-c
	if r.err != nil || len(r.msgs) != 1 || string(r.msgs[0]) != "mine" {
		t.Fatalf("got %q, %v; want [mine]", r.msgs, r.err)
	}

	c = f.run(getLinkReq(0), unix.RTM_NEWLINK)
	h = f.request()
	bad := nlMsg(unix.RTM_NEWLINK, 0, h.Seq, fakePortID, []byte("x"))
	binary.NativeEndian.PutUint32(bad, 400) // longer than the datagram
	f.answer(bad)
	if r := <-c; r.err == nil || !strings.Contains(r.err.Error(), "malformed") {
		t.Fatalf("err = %v; want a malformed-answer error", r.err)
	}
}

// An answer larger than the buffer grows it; a GET is asked again, once its
// ack has been read.
func TestExecutorTruncatedReply(t *testing.T) {
	f := newFakeKernel(t, 64)
	c := f.run(getLinkReq(unix.NLM_F_ACK), unix.RTM_NEWLINK)
	big := make([]byte, 300)
	big[299] = 7
	h := f.request()
	f.answer(nlMsg(unix.RTM_NEWLINK, 0, h.Seq, fakePortID, big))
	f.answer(nlMsg(unix.NLMSG_ERROR, unix.NLM_F_CAPPED, h.Seq, fakePortID, errPayload(0, true, "")))
	h2 := f.request()
	if h2.Seq == h.Seq || h2.Type != unix.RTM_GETLINK {
		t.Fatalf("second request %+v after %+v; want the GET again with a new sequence number", h2, h)
	}
	f.answer(nlMsg(unix.RTM_NEWLINK, 0, h2.Seq, fakePortID, big))
	f.answer(nlMsg(unix.NLMSG_ERROR, unix.NLM_F_CAPPED, h2.Seq, fakePortID, errPayload(0, true, "")))
	r := <-c
	if r.err != nil || len(r.msgs) != 1 || len(r.msgs[0]) != 300 || r.msgs[0][299] != 7 {
		t.Fatalf("got %d messages, %v; want the whole 300-byte answer", len(r.msgs), r.err)
	}
	if len(f.s.buf) < 316 {
		t.Errorf("buffer is %d bytes after a 316-byte answer", len(f.s.buf))
	}

	// A request that changes something is not sent twice.
	f = newFakeKernel(t, 16)
	req := nl.NewNetlinkRequest(unix.RTM_SETLINK, unix.NLM_F_ACK)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	c = f.run(req, 0)
	h = f.request()
	f.answer(nlMsg(unix.NLMSG_ERROR, unix.NLM_F_CAPPED, h.Seq, fakePortID, errPayload(0, true, "")))
	if r := <-c; !errors.Is(r.err, unix.EMSGSIZE) {
		t.Fatalf("err = %v; want EMSGSIZE", r.err)
	}
	if !f.s.usable() {
		t.Error("socket given up after a truncated ack")
	}
}

// A truncated dump part makes the socket unusable (the rest of the dump
// cannot be told apart) with errSocketReset.
func TestExecutorTruncatedDump(t *testing.T) {
	f := newFakeKernel(t, 64)
	c := f.run(getLinkReq(unix.NLM_F_DUMP), unix.RTM_NEWLINK)
	h := f.request()
	f.answer(nlMsg(unix.RTM_NEWLINK, unix.NLM_F_MULTI, h.Seq, fakePortID, make([]byte, 200)))
	if r := <-c; !errors.Is(r.err, errSocketReset) {
		t.Fatalf("err = %v; want errSocketReset", r.err)
	}
	if f.s.usable() || f.s.fd != -1 {
		t.Error("socket still in use after a truncated dump")
	}
	if _, err := f.s.execute(getLinkReq(0), 0); !errors.Is(err, errSocketReset) {
		t.Errorf("request on the given-up socket: %v; want errSocketReset", err)
	}
}

func TestExecutorTimeout(t *testing.T) {
	f := newFakeKernel(t, 4096)
	tv := unix.Timeval{Usec: 50000}
	if err := unix.SetsockoptTimeval(f.s.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	r := <-f.run(getLinkReq(0), unix.RTM_NEWLINK)
	if !errors.Is(r.err, unix.EAGAIN) {
		t.Fatalf("err = %v; want EAGAIN", r.err)
	}
	// The late answer is skipped by the next request.
	h := f.request()
	c := f.run(getLinkReq(0), unix.RTM_NEWLINK)
	h2 := f.request()
	f.answer(nlMsg(unix.RTM_NEWLINK, 0, h.Seq, fakePortID, []byte("late")))
	f.answer(nlMsg(unix.RTM_NEWLINK, 0, h2.Seq, fakePortID, []byte("now")))
	if r := <-c; r.err != nil || len(r.msgs) != 1 || string(r.msgs[0]) != "now" {
		t.Fatalf("got %q, %v; want [now]", r.msgs, r.err)
	}
}

// With the kernel: one socket per namespace, strict, and every request
// finished (no ack or dump part left queued behind it).
func TestRawSocketKernel(t *testing.T) {
	host, _ := openPair(t)
	l := addVeth(t, host, "krk", "10.59.0.1/24")
	s, err := host.sharedSocket()
	if err != nil {
		t.Fatal(err)
	}
	if s != host.raw {
		t.Error("Open did not open the raw socket")
	}
	if !s.strict {
		t.Log("this kernel has no strict checking (< 4.20)")
	}
	queued := func(what string) {
		t.Helper()
		s.mu.Lock()
		defer s.mu.Unlock()
		var b [64]byte
		if n, _, err := unix.Recvfrom(s.fd, b[:], unix.MSG_DONTWAIT); err != unix.EAGAIN {
			t.Errorf("after %s: %d bytes left on the socket (%v)", what, n, err)
		}
	}
	if err := SetUp(host, l); err != nil {
		t.Fatal(err)
	}
	queued("SetUp")
	if _, err := IPv4Conf(host, l); err != nil {
		t.Fatal(err)
	}
	queued("IPv4Conf (a GET with NLM_F_ACK)")
	if _, err := AddrsOf(host, l, netlink.FAMILY_ALL); err != nil {
		t.Fatal(err)
	}
	queued("AddrsOf")
	if _, err := ByIndex(host, 99999); !IsNotFound(err) || !errors.Is(err, unix.ENODEV) {
		t.Errorf("ByIndex(99999) = %v; want ENODEV", err)
	}
	if err := SetUp(host, &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: 99999, Name: "gone"}}); !errors.Is(err, unix.ENODEV) {
		t.Errorf("SetUp(gone) = %v; want ENODEV", err)
	}
	if s.strict {
		// What strict checking refuses comes back as EINVAL.
		req := getLinkReq(0)
		req.AddData(nl.NewRtAttr(unix.IFLA_MTU, nl.Uint32Attr(1500)))
		if _, err := host.rawRequest(req, unix.RTM_NEWLINK); !errors.Is(err, unix.EINVAL) {
			t.Errorf("GETLINK with IFLA_MTU under strict checking: %v; want EINVAL", err)
		}
	}
	queued("the errors")
	// The route lookup toward an address, on a socket of its own.
	name, conf, err := host.ipv4ConfToward(net.IPv4(10, 59, 0, 2))
	if err != nil || name != "krk" || conf == nil {
		t.Errorf("ipv4ConfToward(10.59.0.2) = %q, %d settings, %v; want krk", name, len(conf), err)
	}
}

// A dump longer than one datagram (300 addresses on one link) is read to
// its end; with a receive buffer too small for one part, the socket is
// replaced and the dump asked again.
func TestRawSocketLongDump(t *testing.T) {
	host, _ := openPair(t)
	l := addVeth(t, host, "krd")
	for i := 0; i < 300; i++ {
		a := &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(10, 60, byte(i/250), byte(1+i%250)), Mask: net.CIDRMask(32, 32)}}
		if err := host.Handle.AddrAdd(l, a); err != nil {
			t.Fatal(err)
		}
	}
	s := host.raw
	before := s.recvs
	got, err := AddrsOf(host, l, netlink.FAMILY_V4)
	if err != nil || len(got) != 300 {
		t.Fatalf("AddrsOf = %d addresses, %v; want 300", len(got), err)
	}
	if s.recvs-before < 2 {
		t.Errorf("300 addresses came in %d datagram(s); the test wants a dump over several", s.recvs-before)
	}

	// A single answer that does not fit: the buffer grows, the GET is
	// asked again on the same socket.
	s.buf = make([]byte, 256)
	if _, err := ByName(host, "krd"); err != nil {
		t.Fatalf("ByName with a 256-byte buffer: %v", err)
	}
	if host.raw != s || len(s.buf) <= 256 {
		t.Errorf("after a truncated answer: same socket %v, buffer %d bytes; want the same socket, grown", host.raw == s, len(s.buf))
	}
	// A dump part that does not fit: the socket is replaced.
	s.buf = make([]byte, 256)
	got, err = AddrsOf(host, l, netlink.FAMILY_V4)
	if err != nil || len(got) != 300 {
		t.Fatalf("AddrsOf with a 256-byte buffer = %d addresses, %v; want 300", len(got), err)
	}
	if host.raw == s || s.usable() {
		t.Error("the socket was not replaced after a truncated dump")
	}
}

// Dumps, acked changes and lookups from many goroutines share the socket.
func TestRawSocketConcurrent(t *testing.T) {
	host, _ := openPair(t)
	l := addVeth(t, host, "krx", "10.61.0.1/24", "10.61.0.2/24")
	var wg sync.WaitGroup
	errc := make(chan error, 6)
	for g := 0; g < 6; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 40; i++ {
				var err error
				switch (g + i) % 3 {
				case 0:
					var a []netlink.Addr
					a, err = AddrsOf(host, l, netlink.FAMILY_V4)
					if err == nil && len(a) != 2 {
						err = fmt.Errorf("AddrsOf found %d addresses, want 2", len(a))
					}
				case 1:
					err = SetUp(host, l)
				case 2:
					var x netlink.Link
					x, err = ByIndex(host, l.Attrs().Index)
					if err == nil && x.Attrs().Name != "krx" {
						err = fmt.Errorf("ByIndex answered with %s", x.Attrs().Name)
					}
				}
				if err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
}
