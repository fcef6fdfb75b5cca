package nstest

import (
	"errors"
	"testing"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Handle returns a netlink handle whose socket lives in the namespace at
// nsPath, closed when the test ends. No thread switches namespace to use it.
func Handle(t testing.TB, nsPath string) *netlink.Handle {
	t.Helper()
	fd, err := vnetns.GetFromPath(nsPath)
	if err != nil {
		t.Fatalf("opening namespace %s: %v", nsPath, err)
	}
	defer fd.Close()
	h, err := netlink.NewHandleAt(fd, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatalf("netlink handle in %s: %v", nsPath, err)
	}
	t.Cleanup(h.Close)
	return h
}

// Link returns the link called name in the namespace at nsPath; the test
// fails if there is none.
func Link(t testing.TB, nsPath, name string) netlink.Link {
	t.Helper()
	l, err := Handle(t, nsPath).LinkByName(name)
	if err != nil {
		t.Fatalf("link %s in %s: %v", name, nsPath, err)
	}
	return l
}

// LinkExists reports whether a link called name exists in the namespace.
func LinkExists(t testing.TB, nsPath, name string) bool {
	t.Helper()
	_, err := Handle(t, nsPath).LinkByName(name)
	var nf netlink.LinkNotFoundError
	if err != nil && !errors.As(err, &nf) {
		t.Fatalf("looking up link %s in %s: %v", name, nsPath, err)
	}
	return err == nil
}

// LinkUp reports whether the link called name in the namespace is
// administratively up; the test fails if there is no such link.
func LinkUp(t testing.TB, nsPath, name string) bool {
	t.Helper()
	return Link(t, nsPath, name).Attrs().Flags&unix.IFF_UP != 0
}

// Addrs returns the addresses, as "addr/prefix" strings, of the link called
// name in the namespace, IPv4 first.
func Addrs(t testing.TB, nsPath, name string) []string {
	t.Helper()
	h := Handle(t, nsPath)
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatalf("link %s in %s: %v", name, nsPath, err)
	}
	var out []string
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		var addrs []netlink.Addr
		for range 5 {
			if addrs, err = h.AddrList(l, fam); !errors.Is(err, netlink.ErrDumpInterrupted) {
				break
			}
		}
		if err != nil {
			t.Fatalf("addresses of %s in %s: %v", name, nsPath, err)
		}
		for _, a := range addrs {
			out = append(out, a.IPNet.String())
		}
	}
	return out
}
