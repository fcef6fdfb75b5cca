package link

import (
	"errors"
	"net"
	"reflect"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// comparable strips what ByName deliberately leaves out (counters and
// the details no knit caller reads) from a library-made link.
func comparable(t *testing.T, l netlink.Link) netlink.Link {
	t.Helper()
	a := l.Attrs()
	a.Statistics = nil
	a.Xdp = nil
	a.Vfs = nil
	a.Slave = nil
	a.Protinfo = nil
	if len(a.HardwareAddr) == 0 {
		a.HardwareAddr = nil
	}
	return l
}

func sameLink(t *testing.T, what string, got, want netlink.Link) {
	t.Helper()
	if reflect.TypeOf(got) != reflect.TypeOf(want) || got.Type() != want.Type() {
		t.Errorf("%s: lean lookup gave a %T (%s), the library a %T (%s)", what, got, got.Type(), want, want.Type())
		return
	}
	want = comparable(t, want)
	if !reflect.DeepEqual(got.Attrs(), want.Attrs()) {
		t.Errorf("%s: lean lookup attrs\n%+v\nlibrary attrs\n%+v", what, *got.Attrs(), *want.Attrs())
	}
	if gb, ok := got.(*netlink.Bridge); ok {
		wb := want.(*netlink.Bridge)
		gc, wc := *gb, *wb
		gc.LinkAttrs, wc.LinkAttrs = netlink.LinkAttrs{}, netlink.LinkAttrs{}
		if !reflect.DeepEqual(gc, wc) {
			t.Errorf("%s: lean bridge settings %+v, library %+v", what, gc, wc)
		}
		if gb.VlanFiltering == nil {
			t.Errorf("%s: no VLAN filtering setting read", what)
		}
	}
}

// ByName and ByIndex read what the library's LinkByName and LinkByIndex
// read, for a bridge (with VLAN filtering and a port), a veth end whose
// peer is in another namespace (IFLA_LINK, IFLA_LINK_NETNSID), a bridge
// port (IFLA_MASTER) with an alias, and lo (no kind).
func TestLeanLookupMatchesLibrary(t *testing.T) {
	host, cont := openPair(t)
	vf := true
	err := host.Handle.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "klbr", MTU: 1450, TxQLen: -1}, VlanFiltering: &vf})
	if errors.Is(err, unix.EOPNOTSUPP) {
		// No CONFIG_BRIDGE_VLAN_FILTERING: the setting reads as off.
		vf = false
		err = host.Handle.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "klbr", MTU: 1450, TxQLen: -1}})
	}
	if err != nil {
		t.Fatal(err)
	}
	br, err := host.Handle.LinkByName("klbr")
	if err != nil {
		t.Fatal(err)
	}
	if err := host.Handle.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "klport", TxQLen: -1}, PeerName: "klpeer", PeerNamespace: netlink.NsFd(cont.Fd())}); err != nil {
		t.Fatal(err)
	}
	port, err := host.Handle.LinkByName("klport")
	if err != nil {
		t.Fatal(err)
	}
	if err := host.Handle.LinkSetMasterByIndex(port, br.Attrs().Index); err != nil {
		t.Fatal(err)
	}
	if err := host.Handle.LinkSetAlias(port, "knit test port"); err != nil {
		t.Fatal(err)
	}
	if err := host.Handle.SetPromiscOn(port); err != nil {
		t.Fatal(err)
	}
	if err := host.Handle.LinkSetUp(br); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		ns   *Namespace
		name string
	}{{host, "klbr"}, {host, "klport"}, {cont, "klpeer"}, {host, "lo"}, {cont, "lo"}} {
		want, err := c.ns.Handle.LinkByName(c.name)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ByName(c.ns, c.name)
		if err != nil {
			t.Fatalf("ByName(%s): %v", c.name, err)
		}
		sameLink(t, "ByName "+c.name, got, want)
		got, err = ByIndex(c.ns, want.Attrs().Index)
		if err != nil {
			t.Fatalf("ByIndex(%d): %v", want.Attrs().Index, err)
		}
		want, err = c.ns.Handle.LinkByIndex(want.Attrs().Index)
		if err != nil {
			t.Fatal(err)
		}
		sameLink(t, "ByIndex "+c.name, got, want)
	}
	// The fields knit's callers read, stated once more outright.
	p, err := ByName(host, "klport")
	if err != nil {
		t.Fatal(err)
	}
	a := p.Attrs()
	if a.MasterIndex != br.Attrs().Index || a.ParentIndex == 0 || a.NetNsID < 0 || a.Promisc == 0 || a.Alias != "knit test port" || len(a.HardwareAddr) != 6 {
		t.Errorf("port attrs %+v: want master %d, a peer index and netns id, promisc, alias, MAC", *a, br.Attrs().Index)
	}
	b, err := ByName(host, "klbr")
	if err != nil {
		t.Fatal(err)
	}
	if bb, ok := b.(*netlink.Bridge); !ok || bb.VlanFiltering == nil || *bb.VlanFiltering != vf || bb.Flags&net.FlagUp == 0 {
		t.Errorf("bridge %#v: want VLAN filtering %v, up", b, vf)
	}
}

func TestLeanLookupNotFound(t *testing.T) {
	host, _ := openPair(t)
	if _, err := ByName(host, "klmissing"); !IsNotFound(err) {
		t.Errorf("ByName(missing) = %v; want not found", err)
	}
	if _, err := ByName(host, strings.Repeat("x", 40)); !IsNotFound(err) {
		t.Errorf("ByName(long missing) = %v; want not found", err)
	}
	if _, err := ByIndex(host, 4000); !IsNotFound(err) {
		t.Errorf("ByIndex(missing) = %v; want not found", err)
	}
	if _, err := ByIndex(host, 0); err == nil || IsNotFound(err) {
		t.Errorf("ByIndex(0) = %v; want an invalid-index error", err)
	}
	if _, err := ByName(host, ""); err == nil {
		t.Error("ByName(\"\") succeeded")
	}
}

// A name longer than IFNAMSIZ is looked up as an alternative name.
func TestLeanLookupAltName(t *testing.T) {
	host, _ := openPair(t)
	addVeth(t, host, "klalt")
	l, err := host.Handle.LinkByName("klalt")
	if err != nil {
		t.Fatal(err)
	}
	alt := "knit-alternative-name-0123456789"
	if err := host.Handle.LinkAddAltName(l, alt); err != nil {
		t.Skipf("kernel without alternative names: %v", err)
	}
	got, err := ByName(host, alt)
	if err != nil {
		t.Fatal(err)
	}
	if got.Attrs().Index != l.Attrs().Index || !reflect.DeepEqual(got.Attrs().AltNames, []string{alt}) {
		t.Errorf("ByName(%s) = index %d altnames %v; want %d [%s]", alt, got.Attrs().Index, got.Attrs().AltNames, l.Attrs().Index, alt)
	}
}

func TestParseLinkMalformed(t *testing.T) {
	msg := make([]byte, unix.SizeofIfInfomsg)
	if _, err := parseLink(msg[:4]); err == nil {
		t.Error("short message accepted")
	}
	l, err := parseLink(msg)
	if err != nil {
		t.Fatalf("bare ifinfomsg: %v", err)
	}
	if _, ok := l.(*netlink.Device); !ok || l.Attrs().TxQLen != -1 || l.Attrs().NetNsID != -1 {
		t.Errorf("bare ifinfomsg gave %#v", l)
	}
	// An attribute claiming more bytes than there are.
	bad := append(append([]byte(nil), msg...), 40, 0, unix.IFLA_IFNAME, 0, 'a', 'b', 0, 0)
	if _, err := parseLink(bad); err == nil {
		t.Error("overlong attribute accepted")
	}
	// Trailing bytes too short to be an attribute.
	if _, err := parseLink(append(append([]byte(nil), msg...), 1, 2)); err == nil {
		t.Error("trailing garbage accepted")
	}
	// A well-formed IFLA_IFNAME and an unknown kind.
	good := append(append([]byte(nil), msg...), 8, 0, unix.IFLA_IFNAME, 0, 'a', 'b', 0, 0)
	info := []byte{12, 0, unix.IFLA_INFO_KIND, 0, 'd', 'u', 'm', 'm', 'y', 0, 0, 0}
	good = append(good, byte(4+len(info)), 0, unix.IFLA_LINKINFO, 0)
	good = append(good, info...)
	l, err = parseLink(good)
	if err != nil {
		t.Fatal(err)
	}
	if g, ok := l.(*netlink.GenericLink); !ok || g.LinkType != "dummy" || g.Name != "ab" {
		t.Errorf("got %#v; want a GenericLink dummy named ab", l)
	}
}

func TestRandomBytes(t *testing.T) {
	a, b := make([]byte, 64), make([]byte, 64)
	if err := randomBytes(a); err != nil {
		t.Fatal(err)
	}
	if err := randomBytes(b); err != nil {
		t.Fatal(err)
	}
	if reflect.DeepEqual(a, b) || !nonZero(a) {
		t.Errorf("two reads gave %x and %x", a, b)
	}
	n, err := RandomVethName()
	if err != nil || len(n) != 12 || !strings.HasPrefix(n, "veth") {
		t.Errorf("RandomVethName = %q, %v", n, err)
	}
}

// Lookups share the namespace's socket; concurrent ones each get their own
// answer.
func TestLeanLookupConcurrent(t *testing.T) {
	host, _ := openPair(t)
	addVeth(t, host, "klc")
	want, err := host.Handle.LinkByName("klc")
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 8)
	for g := 0; g < 8; g++ {
		go func() {
			for i := 0; i < 50; i++ {
				name, index := "klc", want.Attrs().Index
				if (g+i)%2 == 0 {
					name, index = "lo", 1
				}
				l, err := ByName(host, name)
				if err == nil && l.Attrs().Index != index {
					err = errors.New("ByName(" + name + ") answered with another link")
				}
				if err == nil {
					l, err = ByIndex(host, index)
					if err == nil && l.Attrs().Name != name {
						err = errors.New("ByIndex answered with " + l.Attrs().Name + ", want " + name)
					}
				}
				if err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
	}
	for g := 0; g < 8; g++ {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
}
