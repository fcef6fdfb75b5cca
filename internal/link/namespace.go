// Package link creates, finds and removes the network links plugins hand to
// containers: veth pairs made inside the container namespace with the host
// end pushed to the host namespace under a random vethXXXXXXXX name, bridges,
// renames, MTU/MAC, and deletion that reports the addresses the link had.
//
// Everything works through per-namespace netlink handles (Namespace), opened
// once per plugin invocation, so no OS thread has to switch namespaces for
// netlink work. Only /proc/sys writes need a switch (see internal/sysctl).
package link

import (
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/knit-cni/knit/internal/netns"
	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Namespace is a network namespace a plugin works in: a netlink handle bound
// to it and an open file descriptor for it (to move links into it).
type Namespace struct {
	// Path is the namespace's path ("" for the plugin's own namespace).
	Path string
	// Handle is a NETLINK_ROUTE handle whose socket lives in the namespace.
	Handle *netlink.Handle
	fd     vnetns.NsHandle

	// The socket of our own for the requests the netlink library cannot
	// express or makes costly (see raw.go): opened by Open together with
	// the handle, otherwise on first use.
	rawMu sync.Mutex
	raw   *nlSocket
}

// Current opens the namespace the plugin runs in (the "host" namespace).
func Current() (*Namespace, error) {
	// The handle's socket is made in the calling thread's namespace, so the
	// descriptor must name that thread's namespace too, not the main
	// thread's (/proc/self), which another goroutine's Do may hold.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	fd, err := vnetns.GetFromPath("/proc/thread-self/ns/net")
	if err != nil {
		return nil, fmt.Errorf("opening the plugin's own network namespace: %w", err)
	}
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		fd.Close()
		return nil, fmt.Errorf("opening a netlink socket: %w", err)
	}
	return &Namespace{Handle: h, fd: fd}, nil
}

// Open opens the namespace at path (e.g. CNI_NETNS). A missing path gives an
// error for which netns.IsNotExist is true; a path that is not a network
// namespace is refused.
func Open(path string) (*Namespace, error) {
	fd, err := netns.Open(path)
	if err != nil {
		return nil, err
	}
	// Both sockets in one trip into the namespace (each trip is two
	// setns calls and a lookup of the thread's own namespace).
	var h *netlink.Handle
	var raw *nlSocket
	err = netns.DoHandle(fd, func() error {
		var err error
		if h, err = netlink.NewHandle(unix.NETLINK_ROUTE); err != nil {
			return err
		}
		if raw, err = openNLSocket(nlBufSize); err != nil {
			h.Close()
			return err
		}
		return nil
	})
	if err != nil {
		fd.Close()
		return nil, fmt.Errorf("opening a netlink socket in %q: %w", path, err)
	}
	return &Namespace{Path: path, Handle: h, fd: fd, raw: raw}, nil
}

// Fd returns the namespace's file descriptor, valid until Close.
func (n *Namespace) Fd() int { return int(n.fd) }

// NsHandle returns the namespace handle, e.g. for netlink subscriptions.
func (n *Namespace) NsHandle() vnetns.NsHandle { return n.fd }

// Do runs fn with the calling goroutine's OS thread in the namespace (see
// netns.Do), for what netlink cannot do from outside, such as /proc/sys
// writes; in the plugin's own namespace it just calls fn.
func (n *Namespace) Do(fn func() error) error {
	if n.Path == "" {
		return fn()
	}
	return netns.DoHandle(n.fd, fn)
}

// Close releases the handle and the descriptor.
func (n *Namespace) Close() {
	if n == nil {
		return
	}
	if n.Handle != nil {
		n.Handle.Close()
	}
	n.rawMu.Lock()
	if n.raw != nil {
		n.raw.close()
		n.raw = nil
	}
	n.rawMu.Unlock()
	n.fd.Close()
}

// IsNotFound reports whether err says a link does not exist.
func IsNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}

// Dump calls fn until it does not report netlink.ErrDumpInterrupted (a dump
// raced with a change), at most five times, then accepts the last answer,
// as the reference plugins do.
func Dump[T any](fn func() (T, error)) (T, error) {
	var v T
	var err error
	for i := 0; i < 5; i++ {
		v, err = fn()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, nil
}
