package link

import (
	"net"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func rawFlags(t *testing.T, ns *Namespace, name string) uint32 {
	t.Helper()
	l, err := ns.Handle.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().RawFlags
}

// SetUp and SetDown change IFF_UP of exactly the link given, in exactly its
// namespace, leave every other flag alone and may be repeated.
func TestSetUpDown(t *testing.T) {
	host, cont := openPair(t)
	addVeth(t, cont, "kud0")
	if err := cont.Handle.LinkSetAllmulticastOn(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: "kud0"}}); err != nil {
		t.Fatal(err)
	}
	before := rawFlags(t, cont, "kud0")
	if before&unix.IFF_UP != 0 || before&unix.IFF_ALLMULTI == 0 {
		t.Fatalf("fixture flags %#x: want down with allmulti", before)
	}
	for _, name := range []string{"kud0", "lo"} {
		l, err := ByName(cont, name)
		if err != nil {
			t.Fatal(err)
		}
		old := rawFlags(t, cont, name)
		for range 2 {
			if err := SetUp(cont, l); err != nil {
				t.Fatalf("SetUp(%s): %v", name, err)
			}
			if got := rawFlags(t, cont, name); got&unix.IFF_UP == 0 || got&^(unix.IFF_UP|unix.IFF_RUNNING|unix.IFF_LOWER_UP) != old&^unix.IFF_UP {
				t.Fatalf("%s after SetUp: flags %#x, before %#x", name, got, old)
			}
		}
		if name == "lo" {
			if hl, err := host.Handle.LinkByName("lo"); err != nil || hl.Attrs().Flags&net.FlagUp != 0 {
				t.Fatalf("SetUp in one namespace set lo up in another (err %v)", err)
			}
		}
		for range 2 {
			if err := SetDown(cont, l); err != nil {
				t.Fatalf("SetDown(%s): %v", name, err)
			}
			if got := rawFlags(t, cont, name); got&(unix.IFF_UP|unix.IFF_RUNNING|unix.IFF_LOWER_UP) != 0 || got != old&^unix.IFF_UP {
				t.Fatalf("%s after SetDown: flags %#x, before %#x", name, got, old)
			}
		}
	}
}

// A link without an index is refused before anything is sent, and a link
// gone since its lookup gives an error IsNotFound recognises.
func TestSetUpErrors(t *testing.T) {
	_, cont := openPair(t)
	err := SetUp(cont, &netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: "nameonly"}})
	if err == nil || !strings.Contains(err.Error(), "invalid ifindex 0") || !strings.Contains(err.Error(), `"nameonly"`) {
		t.Fatalf("SetUp of a link without index: %v", err)
	}
	l := addVeth(t, cont, "kud1")
	if err := cont.Handle.LinkDel(l); err != nil {
		t.Fatal(err)
	}
	for _, f := range []func(*Namespace, netlink.Link) error{SetUp, SetDown} {
		if err := f(cont, l); !IsNotFound(err) || !strings.Contains(err.Error(), cont.Path) {
			t.Fatalf("setting a deleted link up/down: %v, want a not-found error naming %s", err, cont.Path)
		}
	}
}
