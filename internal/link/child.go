package link

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ErrNoDefaultRoute says a namespace has no default route, so no parent
// (master) link can be derived from it.
var ErrNoDefaultRoute = errors.New("no default route")

// tempNameTries bounds the random temporary names CreateChild tries.
const tempNameTries = 5

// randomTempName returns "knit" and 8 random hex digits: the name a link
// carries between its creation and its rename to the wanted name.
func randomTempName() (string, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("reading random bytes for a temporary link name: %w", err)
	}
	return "knit" + hex.EncodeToString(b[:]), nil
}

// where names a namespace in messages.
func where(ns *Namespace) string {
	if ns.Path == "" {
		return "the host namespace"
	}
	return ns.Path
}

// LinkIn returns the link called name in ns, with an error that says where
// it was looked for. A missing link gives an error for which IsNotFound is
// true.
func LinkIn(ns *Namespace, name string) (netlink.Link, error) {
	l, err := ns.Handle.LinkByName(name)
	if err != nil {
		if IsNotFound(err) {
			return nil, fmt.Errorf("no interface named %q in %s: %w", name, where(ns), err)
		}
		return nil, fmt.Errorf("looking up %q in %s: %w", name, where(ns), err)
	}
	return l, nil
}

// CreateChild creates l — a link with a parent, such as a macvlan, ipvlan
// or vlan, whose LinkAttrs.ParentIndex is the parent's ifindex in the
// namespace parent — directly inside cont under a random temporary name,
// then renames it to name there, and returns it as the kernel now reports
// it. parent may be cont itself (the parent lives in the container).
//
// The link never exists under name outside cont, so it cannot clash with
// the parent namespace's own links (the reference plugins' "create with a
// temporary name, then rename"). If cont already has a link called name,
// nothing is created and the error is an *ExistsError. A nil parent creates
// a parentless link (dummy) the same way.
func CreateChild(parent, cont *Namespace, l netlink.Link, name string) (netlink.Link, error) {
	if name == "" {
		return nil, errors.New("creating link: no interface name given")
	}
	if _, err := cont.Handle.LinkByName(name); err == nil {
		return nil, &ExistsError{Name: name, Path: cont.Path}
	} else if !IsNotFound(err) {
		return nil, fmt.Errorf("looking up %q in %s: %w", name, where(cont), err)
	}
	attrs := l.Attrs()
	creator := cont
	attrs.Namespace = nil
	if parent != nil && parent != cont {
		creator = parent
		attrs.Namespace = netlink.NsFd(cont.Fd())
	}
	var tmp string
	for i := 0; ; i++ {
		var err error
		if tmp, err = randomTempName(); err != nil {
			return nil, err
		}
		attrs.Name = tmp
		err = creator.Handle.LinkAdd(l)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EEXIST) || i+1 == tempNameTries {
			return nil, createErr(l, name, err)
		}
	}
	created, err := cont.Handle.LinkByName(tmp)
	if err != nil {
		return nil, fmt.Errorf("looking up the new %s %s in %s: %w", l.Type(), tmp, where(cont), err)
	}
	if err := Rename(cont, created, name); err != nil {
		_ = cont.Handle.LinkDel(created)
		return nil, err
	}
	out, err := cont.Handle.LinkByName(name)
	if err != nil {
		_ = cont.Handle.LinkDel(created)
		return nil, fmt.Errorf("looking up the new %s %s in %s: %w", l.Type(), name, where(cont), err)
	}
	return out, nil
}

// createErr explains a failed RTM_NEWLINK for a child link.
func createErr(l netlink.Link, name string, err error) error {
	kind := l.Type()
	switch {
	case errors.Is(err, unix.EOPNOTSUPP):
		return fmt.Errorf("creating %s %s: this kernel has no %s support (load its module or use a kernel built with it): %w", kind, name, kind, err)
	case errors.Is(err, unix.EBUSY) && kind == "macvlan":
		return fmt.Errorf("creating %s %s: the parent is busy (a passthru macvlan owns it, or it cannot take another mode): %w", kind, name, err)
	case errors.Is(err, unix.EINVAL) && kind == "ipvlan":
		return fmt.Errorf("creating %s %s: the parent cannot carry ipvlans (it may be a loopback, an ipvlan itself, or have a different ipvlan mode already): %w", kind, name, err)
	}
	return fmt.Errorf("creating %s %s: %w", kind, name, err)
}

// DefaultRouteLink returns the link of the first default route in the main
// routing table of ns (IPv4 routes come before IPv6 ones); for a multipath
// route, the first next hop's link. With no default route the error wraps
// ErrNoDefaultRoute.
func DefaultRouteLink(ns *Namespace) (netlink.Link, error) {
	routes, err := Dump(func() ([]netlink.Route, error) { return ns.Handle.RouteList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, fmt.Errorf("listing routes in %s: %w", where(ns), err)
	}
	for _, r := range routes {
		if r.Dst != nil {
			if ones, _ := r.Dst.Mask.Size(); ones != 0 {
				continue
			}
		}
		idx := r.LinkIndex
		if idx == 0 && len(r.MultiPath) > 0 {
			idx = r.MultiPath[0].LinkIndex
		}
		if idx == 0 {
			continue
		}
		l, err := ns.Handle.LinkByIndex(idx)
		if err != nil {
			return nil, fmt.Errorf("looking up the default route's interface (ifindex %d) in %s: %w", idx, where(ns), err)
		}
		return l, nil
	}
	return nil, fmt.Errorf("%w in %s", ErrNoDefaultRoute, where(ns))
}
