package link

import (
	"errors"
	"net"
	"testing"

	"github.com/vishvananda/netlink"
)

// hostUplink makes a veth pair in ns and returns the end called name (up).
func hostUplink(t *testing.T, ns *Namespace, name string) netlink.Link {
	t.Helper()
	attrs := netlink.NewLinkAttrs()
	attrs.Name = name
	if err := ns.Handle.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: name + "p"}); err != nil {
		t.Fatal(err)
	}
	l, err := ns.Handle.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := ns.Handle.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
	return l
}

func macvlanOf(parent netlink.Link) *netlink.Macvlan {
	attrs := netlink.NewLinkAttrs()
	attrs.ParentIndex = parent.Attrs().Index
	return &netlink.Macvlan{LinkAttrs: attrs, Mode: netlink.MACVLAN_MODE_BRIDGE}
}

// A child of a host link is made in the container under the wanted name
// even though the host has a link of that name; a second one of the same
// name is an ExistsError and leaves the first alone; no temporary name is
// left anywhere.
func TestCreateChildInContainer(t *testing.T) {
	host, cont := openPair(t)
	eth0 := hostUplink(t, host, "eth0")
	l, err := CreateChild(host, cont, macvlanOf(eth0), "eth0")
	if err != nil {
		t.Fatal(err)
	}
	mv, ok := l.(*netlink.Macvlan)
	if !ok || mv.Name != "eth0" || mv.ParentIndex != eth0.Attrs().Index || mv.NetNsID < 0 {
		t.Fatalf("got %T %+v; want macvlan eth0 of the host's eth0", l, l.Attrs())
	}
	_, err = CreateChild(host, cont, macvlanOf(eth0), "eth0")
	var ee *ExistsError
	if !errors.As(err, &ee) || ee.Name != "eth0" || ee.Path != cont.Path {
		t.Fatalf("second CreateChild = %v; want ExistsError for eth0 in the container", err)
	}
	for _, ns := range []*Namespace{host, cont} {
		ls, _ := ns.Handle.LinkList()
		for _, x := range ls {
			if len(x.Attrs().Name) > 4 && x.Attrs().Name[:4] == "knit" {
				t.Errorf("temporary link %s left in %s", x.Attrs().Name, where(ns))
			}
		}
	}
	if got, _ := cont.Handle.LinkByName("eth0"); got == nil || got.Attrs().Index != l.Attrs().Index {
		t.Fatal("the first child was replaced")
	}
}

// A parent in the container itself (linkInContainer), and a parentless
// link with a nil parent.
func TestCreateChildParentInContainer(t *testing.T) {
	_, cont := openPair(t)
	m0 := hostUplink(t, cont, "m0")
	l, err := CreateChild(cont, cont, macvlanOf(m0), "net1")
	if err != nil {
		t.Fatal(err)
	}
	if l.Attrs().ParentIndex != m0.Attrs().Index || l.Attrs().NetNsID >= 0 {
		t.Fatalf("parent %d netnsid %d; want m0 (%d) in the same namespace", l.Attrs().ParentIndex, l.Attrs().NetNsID, m0.Attrs().Index)
	}
	// A kernel error (no such parent) is reported with the kind and name.
	bad := macvlanOf(m0)
	bad.ParentIndex = 9999
	if _, err := CreateChild(cont, cont, bad, "net2"); err == nil {
		t.Fatal("CreateChild with a missing parent succeeded")
	}
	if _, err := cont.Handle.LinkByName("net2"); err == nil {
		t.Fatal("net2 exists after a failed CreateChild")
	}
}

// DefaultRouteLink finds the default route's link, and says so when there
// is none.
func TestDefaultRouteLink(t *testing.T) {
	host, _ := openPair(t)
	hostUplink(t, host, "eth0")
	up := hostUplink(t, host, "up1")
	if _, err := DefaultRouteLink(host); !errors.Is(err, ErrNoDefaultRoute) {
		t.Fatalf("no default route: %v; want ErrNoDefaultRoute", err)
	}
	if err := host.Handle.AddrAdd(up, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(192, 0, 2, 2), Mask: net.CIDRMask(24, 32)}}); err != nil {
		t.Fatal(err)
	}
	if err := host.Handle.RouteAdd(&netlink.Route{LinkIndex: up.Attrs().Index, Gw: net.IPv4(192, 0, 2, 1)}); err != nil {
		t.Fatal(err)
	}
	l, err := DefaultRouteLink(host)
	if err != nil || l.Attrs().Name != "up1" {
		t.Fatalf("DefaultRouteLink = %v, %v; want up1", l, err)
	}
	if _, err := LinkIn(host, "nope"); !IsNotFound(err) {
		t.Fatalf("LinkIn(missing) = %v; want a not-found error", err)
	}
}
