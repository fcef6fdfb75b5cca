package link

import (
	"errors"
	"net"
	"testing"

	"github.com/knit-cni/knit/internal/kfeature"
	"github.com/vishvananda/netlink"
)

// moveFixture makes a veth end "mv0" (MTU 1400, alias "orig", up) in host,
// with its peer in cont under "peer0".
func moveFixture(t *testing.T, host, cont *Namespace) netlink.Link {
	t.Helper()
	attrs := netlink.NewLinkAttrs()
	attrs.Name = "mv0"
	attrs.MTU = 1400
	if err := host.Handle.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: "peer0", PeerNamespace: netlink.NsFd(cont.Fd())}); err != nil {
		t.Fatal(err)
	}
	l, err := host.Handle.LinkByName("mv0")
	if err != nil {
		t.Fatal(err)
	}
	if err := host.Handle.LinkSetAlias(l, "orig"); err != nil {
		t.Fatal(err)
	}
	if err := host.Handle.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
	l, _ = host.Handle.LinkByName("mv0")
	return l
}

func TestMoveViaRenamesAndSetsAlias(t *testing.T) {
	host, cont := openPair(t)
	l := moveFixture(t, host, cont)
	alias := "mv0"
	got, err := MoveVia(host, cont, l, Transit{Name: "net1", Alias: &alias, MTU: 1300})
	if err != nil {
		t.Fatal(err)
	}
	a := got.Attrs()
	if a.Name != "net1" || a.Alias != "mv0" || a.MTU != 1300 || a.HardwareAddr.String() != l.Attrs().HardwareAddr.String() {
		t.Errorf("moved link: name %s alias %q MTU %d MAC %s", a.Name, a.Alias, a.MTU, a.HardwareAddr)
	}
	if _, err := host.Handle.LinkByName("mv0"); !IsNotFound(err) {
		t.Errorf("mv0 still in the source namespace (%v)", err)
	}
	// And back, keeping the alias when Transit.Alias is nil.
	back, err := MoveVia(cont, host, got, Transit{Name: "mv0"})
	if err != nil {
		t.Fatal(err)
	}
	if back.Attrs().Name != "mv0" || back.Attrs().Alias != "mv0" {
		t.Errorf("moved back: %s alias %q", back.Attrs().Name, back.Attrs().Alias)
	}
}

// TestMoveViaRollsBack: a name taken in the target makes the move fail
// with *ExistsError and the link comes back as it was, up again.
func TestMoveViaRollsBack(t *testing.T) {
	kfeature.Require(t, kfeature.Bridge)
	host, cont := openPair(t)
	l := moveFixture(t, host, cont)
	attrs := netlink.NewLinkAttrs()
	attrs.Name = "net1"
	if err := cont.Handle.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil {
		t.Fatal(err)
	}
	alias := "changed"
	_, err := MoveVia(host, cont, l, Transit{Name: "net1", Alias: &alias, MTU: 1280})
	var ee *ExistsError
	if !errors.As(err, &ee) || ee.Name != "net1" {
		t.Fatalf("got %v, want *ExistsError for net1", err)
	}
	back, err := host.Handle.LinkByName("mv0")
	if err != nil {
		t.Fatalf("link not back in the source namespace: %v", err)
	}
	a := back.Attrs()
	if a.Alias != "orig" || a.MTU != 1400 || a.Flags&net.FlagUp == 0 {
		t.Errorf("after rollback: alias %q MTU %d up %v", a.Alias, a.MTU, a.Flags&net.FlagUp != 0)
	}
}

func TestTempNamespaceIsSeparate(t *testing.T) {
	host, _ := openPair(t)
	tmp, err := TempNamespace()
	if err != nil {
		t.Fatal(err)
	}
	defer tmp.Close()
	links, err := tmp.Handle.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	if len(links) != 1 || links[0].Attrs().Name != "lo" {
		t.Errorf("temporary namespace has %d links, want only lo", len(links))
	}
	moveFixture(t, host, tmp)
	if _, err := tmp.Handle.LinkByName("peer0"); err != nil {
		t.Errorf("peer not in the temporary namespace: %v", err)
	}
}
