package link

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// nlSocket is the NETLINK_ROUTE socket of the raw path (see raw.go), with
// an executor of its own instead of the netlink library's: the library's
// receive keeps a 64 KiB array on the goroutine's stack, so its first use
// in a process grows that stack to 128 KiB (a copy and 16 freshly zeroed
// pages) and every receive zeroes 64 KiB, which in a short-lived plugin
// costs more than the request. Here the receive buffer belongs to the socket
// (allocated once, on the heap; the kernel touches only the pages it
// writes), the socket is blocking with the library's receive timeout
// (SO_RCVTIMEO, no poller registration) and it is connected to the kernel,
// which then refuses messages to it from any other sender.
//
// One request runs at a time per socket (mu): concurrent callers queue. A
// reply that carries another sequence number (left over from a request that
// failed or timed out) is skipped.
type nlSocket struct {
	mu     sync.Mutex
	fd     int // -1 once closed
	portid uint32
	seq    uint32
	// strict says the kernel's strict checking of GET requests
	// (NETLINK_GET_STRICT_CHK, kernel ≥ 4.20) is on: it is needed for
	// filtered dumps and harmless for every request knit sends.
	strict bool
	buf    []byte
	recvs  int // datagrams received, for tests
	// err is set when the socket became unusable (a dump answer did not
	// fit buf); it is closed then and the Namespace opens another.
	err error
}

const (
	// nlBufSize is the receive buffer of a socket. The kernel sizes dump
	// parts to the reader's buffer (capped just below 32 KiB), so a dump
	// always fits; a larger single answer makes the buffer grow.
	nlBufSize = 32 << 10
	// nlBufMax is how far the buffer may grow.
	nlBufMax = 4 << 20
	// nlRetries is how many times a GET whose answer did not fit is
	// asked again with a larger buffer.
	nlRetries = 3
)

// errSocketReset says a socket was closed because a dump answer did not fit
// its buffer (the rest of that dump could not be told apart); the request
// may be repeated on a new socket, whose buffer is large enough.
var errSocketReset = errors.New("netlink socket reset after a truncated dump")

// openNLSocket opens a NETLINK_ROUTE socket in the calling thread's network
// namespace with a receive buffer of bufSize bytes.
func openNLSocket(bufSize int) (*nlSocket, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("opening a netlink socket: %w", err)
	}
	s := &nlSocket{fd: fd, buf: make([]byte, bufSize)}
	if err := s.setup(); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return s, nil
}

func (s *nlSocket) setup() error {
	// Connecting binds the socket (the kernel picks the port id) and
	// makes the kernel the only peer that may send to it.
	if err := unix.Connect(s.fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("connecting a netlink socket to the kernel: %w", err)
	}
	sa, err := unix.Getsockname(s.fd)
	if err != nil {
		return fmt.Errorf("reading a netlink socket's port id: %w", err)
	}
	nsa, ok := sa.(*unix.SockaddrNetlink)
	if !ok {
		return fmt.Errorf("a netlink socket has a %T address", sa)
	}
	s.portid = nsa.Pid
	tv := nl.SocketTimeoutTv
	if err := unix.SetsockoptTimeval(s.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fmt.Errorf("setting a netlink socket's receive timeout: %w", err)
	}
	// Best effort, each unknown to some old kernel: errors without the
	// request echoed back (small acks), with the kernel's message, and
	// strict checking.
	_ = unix.SetsockoptInt(s.fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	_ = unix.SetsockoptInt(s.fd, unix.SOL_NETLINK, unix.NETLINK_EXT_ACK, 1)
	s.strict = unix.SetsockoptInt(s.fd, unix.SOL_NETLINK, unix.NETLINK_GET_STRICT_CHK, 1) == nil
	return nil
}

// close closes the socket; requests still queued on it fail.
func (s *nlSocket) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeLocked(errors.New("netlink socket closed"))
}

func (s *nlSocket) closeLocked(why error) {
	if s.fd >= 0 {
		unix.Close(s.fd)
		s.fd = -1
	}
	if s.err == nil {
		s.err = why
	}
}

// usable reports whether requests may still run on s.
func (s *nlSocket) usable() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err == nil
}

// bufLen is the size of s's receive buffer.
func (s *nlSocket) bufLen() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.buf)
}

// execute sends req and returns the data of its answers of type resType
// (every type when 0), copied out of the receive buffer, as the library's
// req.Execute does. An NLMSG_ERROR answer becomes its syscall.Errno (with
// the kernel's message, if any); a dump the kernel marked interrupted
// returns what it got together with nl.ErrDumpInterrupted (see Dump).
func (s *nlSocket) execute(req *nl.NetlinkRequest, resType uint16) ([][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for try := 0; ; try++ {
		if s.err != nil {
			return nil, s.err
		}
		out, retry, err := s.exchange(req, resType)
		if !retry || try == nlRetries {
			return out, err
		}
	}
}

// Message types and flags as the kernel numbers them.
const (
	nlmsgHdrLen   = unix.NLMSG_HDRLEN
	nlmFDumpIntr  = unix.NLM_F_DUMP_INTR
	nlmFAckTLVs   = 0x200 // NLM_F_ACK_TLVS, on NLMSG_ERROR and NLMSG_DONE
	nlmsgerrMsg   = 1     // NLMSGERR_ATTR_MSG
	nlmsgerrLen   = 4     // the error code before the (capped) request
	rtmKindMask   = 3     // rtnetlink types come in NEW, DEL, GET, SET
	rtmKindGet    = 2
	nlSockaddrLen = unix.SizeofSockaddrNetlink
)

// exchange sends req once and reads its answers. retry says the answer did
// not fit the buffer, which has grown, and req (a GET) may be sent again.
func (s *nlSocket) exchange(req *nl.NetlinkRequest, resType uint16) (out [][]byte, retry bool, err error) {
	s.seq++
	req.Seq = s.seq
	req.Pid = 0
	isGet := req.Type&rtmKindMask == rtmKindGet
	isDump := isGet && req.Flags&unix.NLM_F_DUMP != 0
	// A request with NLM_F_ACK is answered by its reply (if any) and then
	// an ack; a dump ends with NLMSG_DONE and is never acked.
	wantAck := req.Flags&unix.NLM_F_ACK != 0 && !isDump
	if err := s.send(req.Serialize()); err != nil {
		return nil, false, err
	}
	intr := false
	truncated := 0 // the size of an answer that did not fit, once seen
	for {
		n, err := s.recv()
		if err != nil {
			return nil, false, err
		}
		b := s.buf[:min(n, len(s.buf))]
		if n > len(s.buf) {
			// The kernel dropped what did not fit. Grow for the next
			// read; what to do with this request depends on what
			// was lost.
			if len(b) < nlmsgHdrLen || n > nlBufMax {
				s.closeLocked(fmt.Errorf("netlink socket closed after an answer of %d bytes, more than it takes (%d)", n, nlBufMax))
				return nil, false, fmt.Errorf("the kernel's answer (%d bytes) did not fit the %d-byte receive buffer: %w", n, len(s.buf), unix.EMSGSIZE)
			}
			h := header(b)
			mine := h.Seq == req.Seq && h.Pid == s.portid
			size := len(s.buf)
			s.buf = make([]byte, (n+4095)&^4095)
			if !mine {
				continue // an old request's answer, lost: skip it
			}
			if h.Flags&unix.NLM_F_MULTI != 0 {
				// Part of a dump: whether its end was in what got
				// lost cannot be told, and the kernel refuses a new
				// dump while this one runs. Give the socket up.
				s.closeLocked(errSocketReset)
				return nil, false, fmt.Errorf("a dump answer of %d bytes did not fit the %d-byte receive buffer: %w", n, size, errSocketReset)
			}
			if h.Type == unix.NLMSG_ERROR || h.Type == unix.NLMSG_DONE || !wantAck {
				return nil, isGet, fmt.Errorf("the kernel's answer (%d bytes) did not fit the %d-byte receive buffer: %w", n, size, unix.EMSGSIZE)
			}
			truncated = n
			continue // drain to the ack, then retry a GET
		}
		for len(b) > 0 {
			if len(b) < nlmsgHdrLen {
				return nil, false, fmt.Errorf("malformed netlink answer: %d bytes after the last message", len(b))
			}
			h := header(b)
			if h.Len < nlmsgHdrLen || int(h.Len) > len(b) {
				return nil, false, fmt.Errorf("malformed netlink answer: message of length %d in %d bytes", h.Len, len(b))
			}
			data := b[nlmsgHdrLen:h.Len]
			b = b[min(nlmAlign(int(h.Len)), len(b)):]
			if h.Seq != req.Seq || h.Pid != s.portid {
				continue // another request's
			}
			if h.Flags&nlmFDumpIntr != 0 {
				intr = true
			}
			switch h.Type {
			case unix.NLMSG_NOOP:
				continue
			case unix.NLMSG_ERROR, unix.NLMSG_DONE:
				if err := nlError(h, data); err != nil {
					return nil, false, err
				}
				if truncated != 0 {
					return nil, isGet, fmt.Errorf("the kernel's answer (%d bytes) did not fit the receive buffer: %w", truncated, unix.EMSGSIZE)
				}
				if intr {
					return out, false, nl.ErrDumpInterrupted
				}
				return out, false, nil
			}
			if truncated == 0 && (resType == 0 || h.Type == resType) {
				out = append(out, append([]byte(nil), data...))
			}
			if h.Flags&unix.NLM_F_MULTI == 0 && !wantAck {
				return out, false, nil
			}
		}
	}
}

// nlError returns the error an NLMSG_ERROR or NLMSG_DONE message carries
// (nil for an ack or a plain end of dump).
func nlError(h unix.NlMsghdr, data []byte) error {
	if len(data) < nlmsgerrLen {
		if h.Type == unix.NLMSG_DONE {
			return nil // no payload: no error
		}
		return fmt.Errorf("malformed netlink error message (%d bytes)", len(data))
	}
	code := int32(binary.NativeEndian.Uint32(data))
	if code == 0 {
		return nil
	}
	err := error(syscall.Errno(-code))
	if h.Flags&nlmFAckTLVs == 0 {
		return err
	}
	tlvs := data[nlmsgerrLen:]
	if h.Type == unix.NLMSG_ERROR {
		// The request's header (capped) or the whole request comes first.
		if len(tlvs) < nlmsgHdrLen {
			return err
		}
		skip := nlmsgHdrLen
		if h.Flags&unix.NLM_F_CAPPED == 0 {
			skip = nlmAlign(int(header(tlvs).Len))
		}
		if skip > len(tlvs) {
			return err
		}
		tlvs = tlvs[skip:]
	}
	for {
		typ, val, rest, ok, _ := rtAttr(tlvs)
		if !ok {
			return err
		}
		if typ == nlmsgerrMsg {
			if msg := string(trimNUL(val)); msg != "" {
				return fmt.Errorf("%w: %s", err, msg)
			}
		}
		tlvs = rest
	}
}

func nlmAlign(n int) int { return (n + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1) }

// header reads the netlink message header at the start of b (≥ 16 bytes).
func header(b []byte) unix.NlMsghdr {
	return unix.NlMsghdr{
		Len:   binary.NativeEndian.Uint32(b[0:4]),
		Type:  binary.NativeEndian.Uint16(b[4:6]),
		Flags: binary.NativeEndian.Uint16(b[6:8]),
		Seq:   binary.NativeEndian.Uint32(b[8:12]),
		Pid:   binary.NativeEndian.Uint32(b[12:16]),
	}
}

// send writes one request to the kernel (the socket's peer).
func (s *nlSocket) send(b []byte) error {
	for {
		_, _, e := unix.Syscall6(unix.SYS_SENDTO, uintptr(s.fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0, 0, 0)
		switch e {
		case 0:
			return nil
		case unix.EINTR:
			continue
		}
		return fmt.Errorf("sending a netlink request: %w", e)
	}
}

// recv reads one datagram from the kernel into s.buf and returns its full
// size, which is more than len(s.buf) when it did not fit (the kernel then
// drops the rest). A receive interrupted by a signal is repeated; one that
// times out gives unix.EAGAIN, as the library's does.
func (s *nlSocket) recv() (int, error) {
	for {
		var from unix.RawSockaddrNetlink
		iov := unix.Iovec{Base: &s.buf[0]}
		iov.SetLen(len(s.buf))
		msg := unix.Msghdr{Name: (*byte)(unsafe.Pointer(&from)), Namelen: nlSockaddrLen, Iov: &iov, Iovlen: 1}
		// MSG_TRUNC: return the datagram's real length.
		n, _, e := unix.Syscall(unix.SYS_RECVMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&msg)), unix.MSG_TRUNC)
		switch e {
		case 0:
		case unix.EINTR:
			// Go's preemption signals interrupt a receive with a
			// timeout even with SA_RESTART.
			continue
		case unix.EAGAIN:
			return 0, fmt.Errorf("no answer from the kernel within %s: %w", time.Duration(nl.SocketTimeoutTv.Nano()), e)
		default:
			return 0, fmt.Errorf("receiving a netlink answer: %w", e)
		}
		if from.Pid != 0 {
			continue // not from the kernel (connect should prevent it)
		}
		s.recvs++
		return int(n), nil
	}
}
