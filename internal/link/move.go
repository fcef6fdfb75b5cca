package link

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// TempNamespace creates an anonymous network namespace that exists until
// Close (nothing else holds it). Links are parked in one while they are
// renamed so that neither side ever sees a half-renamed device: udev,
// NetworkManager and other plugins cannot race a rename they cannot see.
// A physical device left in it when it closes returns to the machine's
// initial namespace; a virtual one is destroyed.
func TempNamespace() (*Namespace, error) {
	type answer struct {
		fd  vnetns.NsHandle
		err error
	}
	ch := make(chan answer, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := vnetns.Get()
		if err != nil {
			ch <- answer{err: fmt.Errorf("getting the current network namespace: %w", err)}
			return // thread stays locked and is discarded
		}
		defer orig.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- answer{err: fmt.Errorf("unshare(CLONE_NEWNET): %w", err)}
			return
		}
		fd, gerr := vnetns.Get()
		if err := vnetns.Set(orig); err != nil {
			if gerr == nil {
				fd.Close()
			}
			ch <- answer{err: fmt.Errorf("returning to the original network namespace: %w", err)}
			return // thread stays locked: it is in the wrong namespace
		}
		runtime.UnlockOSThread()
		ch <- answer{fd: fd, err: gerr}
	}()
	a := <-ch
	if a.err != nil {
		return nil, fmt.Errorf("creating a temporary network namespace: %w", a.err)
	}
	h, err := netlink.NewHandleAt(a.fd, unix.NETLINK_ROUTE)
	if err != nil {
		a.fd.Close()
		return nil, fmt.Errorf("opening a netlink socket in a temporary namespace: %w", err)
	}
	// The path names the descriptor, so netns.Do works on it too.
	path := fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), int(a.fd))
	return &Namespace{Path: path, Handle: h, fd: a.fd}, nil
}

// Transit is what MoveVia changes while the link is in the temporary
// namespace.
type Transit struct {
	// Name renames the link ("" keeps its name).
	Name string
	// Alias sets the link's alias (nil leaves it; a pointer to "" clears it).
	Alias *string
	// MTU sets the link's MTU (0 leaves it).
	MTU int
}

// MoveVia moves l from the namespace from into the namespace to, by way of
// a temporary namespace in which it is renamed and given the alias and MTU
// of t, and returns the link as seen in to. The link arrives down. On
// failure it puts the link back where it was, with its old name, alias
// and MTU, as far as it can; the error says what could not be undone.
// A name already taken in to gives an *ExistsError.
func MoveVia(from, to *Namespace, l netlink.Link, t Transit) (netlink.Link, error) {
	orig := *l.Attrs()
	tmp, err := TempNamespace()
	if err != nil {
		return nil, err
	}
	defer tmp.Close()

	if err := from.Handle.LinkSetNsFd(l, tmp.Fd()); err != nil {
		return nil, fmt.Errorf("moving %s into a temporary namespace: %w", orig.Name, err)
	}
	tl, err := tmp.Handle.LinkByName(orig.Name)
	if err != nil {
		// The kernel moved it but we cannot see it: nothing to roll back with.
		return nil, fmt.Errorf("finding %s in the temporary namespace: %w", orig.Name, err)
	}
	back := func(cause error) error {
		if rerr := restoreFromTransit(tmp, from, tl, orig); rerr != nil {
			slog.Error("could not return link after a failed move", "link", orig.Name, "error", rerr)
			return fmt.Errorf("%w; and putting %s back failed: %v", cause, orig.Name, rerr)
		}
		return cause
	}

	if err := tmp.Handle.LinkSetDown(tl); err != nil {
		return nil, back(fmt.Errorf("setting %s down: %w", orig.Name, err))
	}
	if t.Alias != nil && *t.Alias != orig.Alias {
		if err := tmp.Handle.LinkSetAlias(tl, *t.Alias); err != nil {
			return nil, back(fmt.Errorf("setting the alias of %s to %q: %w", orig.Name, *t.Alias, err))
		}
	}
	if t.MTU > 0 && t.MTU != orig.MTU {
		if err := tmp.Handle.LinkSetMTU(tl, t.MTU); err != nil {
			return nil, back(fmt.Errorf("setting MTU %d on %s: %w", t.MTU, orig.Name, err))
		}
	}
	name := orig.Name
	if t.Name != "" && t.Name != orig.Name {
		if err := tmp.Handle.LinkSetName(tl, t.Name); err != nil {
			return nil, back(fmt.Errorf("renaming %s to %s: %w", orig.Name, t.Name, err))
		}
		name = t.Name
		tl.Attrs().Name = name
	}
	if err := tmp.Handle.LinkSetNsFd(tl, to.Fd()); err != nil {
		cause := fmt.Errorf("moving %s into %s: %w", name, describeNS(to), err)
		if errors.Is(err, unix.EEXIST) {
			cause = &ExistsError{Name: name, Path: to.Path}
		}
		return nil, back(cause)
	}
	nl, err := to.Handle.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("finding %s in %s after the move: %w", name, describeNS(to), err)
	}
	return nl, nil
}

// restoreFromTransit undoes MoveVia's changes to the link tl in tmp and
// moves it back to from.
func restoreFromTransit(tmp, from *Namespace, tl netlink.Link, orig netlink.LinkAttrs) error {
	cur, err := tmp.Handle.LinkByIndex(tl.Attrs().Index)
	if err != nil {
		return fmt.Errorf("finding it in the temporary namespace: %w", err)
	}
	var errs []error
	if cur.Attrs().Name != orig.Name {
		if err := tmp.Handle.LinkSetName(cur, orig.Name); err != nil {
			errs = append(errs, fmt.Errorf("renaming back to %s: %w", orig.Name, err))
		}
	}
	if cur.Attrs().Alias != orig.Alias {
		if err := tmp.Handle.LinkSetAlias(cur, orig.Alias); err != nil {
			errs = append(errs, fmt.Errorf("restoring the alias: %w", err))
		}
	}
	if cur.Attrs().MTU != orig.MTU && orig.MTU > 0 {
		if err := tmp.Handle.LinkSetMTU(cur, orig.MTU); err != nil {
			errs = append(errs, fmt.Errorf("restoring MTU %d: %w", orig.MTU, err))
		}
	}
	if err := tmp.Handle.LinkSetNsFd(cur, from.Fd()); err != nil {
		return errors.Join(append(errs, fmt.Errorf("moving it back to %s: %w", describeNS(from), err))...)
	}
	if orig.Flags&net.FlagUp != 0 {
		if l, err := from.Handle.LinkByName(orig.Name); err == nil {
			if err := from.Handle.LinkSetUp(l); err != nil {
				errs = append(errs, fmt.Errorf("setting it up again: %w", err))
			}
		}
	}
	return errors.Join(errs...)
}

func describeNS(ns *Namespace) string {
	if ns.Path == "" {
		return "the host namespace"
	}
	return ns.Path
}
