package link

import (
	"net"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
)

func addVeth(t *testing.T, ns *Namespace, name string, addrs ...string) netlink.Link {
	t.Helper()
	// A veth pair (this kernel may lack dummy links); the peer stays unused.
	if err := ns.Handle.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: name + "p"}); err != nil {
		t.Fatal(err)
	}
	l, err := ns.Handle.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		na, err := netlink.ParseAddr(a)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(a, ":") {
			na.Flags = 0x80 // IFA_F_NODAD
		}
		if err := ns.Handle.AddrAdd(l, na); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

// AddrsOf returns exactly one link's addresses, per family, like AddrList.
func TestAddrsOf(t *testing.T) {
	_, ns := openPair(t)
	a := addVeth(t, ns, "kra", "10.55.0.1/24", "10.55.1.1/16", "fd55::1/64")
	addVeth(t, ns, "krb", "10.56.0.1/24", "fd56::1/64")
	for _, tc := range []struct {
		family int
		want   []string
	}{
		{netlink.FAMILY_V4, []string{"10.55.0.1/24", "10.55.1.1/16"}},
		{netlink.FAMILY_V6, []string{"fd55::1/64"}},
		{netlink.FAMILY_ALL, []string{"10.55.0.1/24", "10.55.1.1/16", "fd55::1/64"}},
	} {
		got, err := AddrsOf(ns, a, tc.family)
		if err != nil {
			t.Fatal(err)
		}
		var s []string
		for _, x := range got {
			if x.LinkIndex != a.Attrs().Index {
				t.Errorf("family %d: address %s has link index %d, want %d", tc.family, x.IPNet, x.LinkIndex, a.Attrs().Index)
			}
			if x.IP.IsLinkLocalUnicast() {
				continue // the kernel's own, once the link is up
			}
			s = append(s, x.IPNet.String())
		}
		slices.Sort(s)
		if !slices.Equal(s, tc.want) {
			t.Errorf("AddrsOf(kra, family %d) = %v; want %v", tc.family, s, tc.want)
		}
		ref, err := ns.Handle.AddrList(a, tc.family)
		if err != nil {
			t.Fatal(err)
		}
		if len(ref) != len(got) {
			t.Errorf("family %d: AddrsOf found %d addresses, AddrList %d", tc.family, len(got), len(ref))
		}
	}
	// A peer address (IFA_ADDRESS differing from IFA_LOCAL) is reported as Peer.
	p := addVeth(t, ns, "krp")
	pa := &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(10, 57, 0, 1), Mask: net.CIDRMask(32, 32)},
		Peer: &net.IPNet{IP: net.IPv4(10, 57, 0, 2), Mask: net.CIDRMask(32, 32)}}
	if err := ns.Handle.AddrAdd(p, pa); err != nil {
		t.Fatal(err)
	}
	got, err := AddrsOf(ns, p, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].IPNet.String() != "10.57.0.1/32" || got[0].Peer == nil || !got[0].Peer.IP.Equal(net.IPv4(10, 57, 0, 2)) {
		t.Errorf("AddrsOf(krp) = %+v; want 10.57.0.1/32 with peer 10.57.0.2", got)
	}
}

// IPv4Conf and SetIPv4Conf read and write what /proc/sys/net/ipv4/conf shows.
func TestIPv4Conf(t *testing.T) {
	_, ns := openPair(t)
	l := addVeth(t, ns, "krc")
	proc := func(name string) string {
		var v string
		if err := ns.Do(func() error {
			b, err := os.ReadFile("/proc/sys/net/ipv4/conf/krc/" + name)
			v = strings.TrimSpace(string(b))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, name := range []string{"arp_notify", "arp_ignore", "arp_announce"} {
		id, ok := IPv4ConfID(name)
		if !ok {
			t.Fatalf("IPv4ConfID(%q) not settable", name)
		}
		cur, err := IPv4Conf(ns, l)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := cur[id], proc(name); want != "0" || got != 0 {
			t.Fatalf("%s before: netlink %d, /proc %s; want 0 and 0", name, got, want)
		}
		if err := SetIPv4Conf(ns, l, map[int]uint32{id: 2}); err != nil {
			t.Fatal(err)
		}
		if got := proc(name); got != "2" {
			t.Errorf("after SetIPv4Conf(%s=2), /proc says %s", name, got)
		}
		cur, err = IPv4Conf(ns, l)
		if err != nil {
			t.Fatal(err)
		}
		if cur[id] != 2 {
			t.Errorf("after SetIPv4Conf(%s=2), IPv4Conf says %d", name, cur[id])
		}
	}
	for _, name := range []string{"forwarding", "rp_filter", "route_localnet", "no_such_key"} {
		if _, ok := IPv4ConfID(name); ok {
			t.Errorf("IPv4ConfID(%q) is settable; its /proc handler does more than store the value (or it does not exist)", name)
		}
	}
	fwd := ipv4ConfIDs["forwarding"]
	if err := SetIPv4Conf(ns, l, map[int]uint32{fwd: 1}); err == nil {
		t.Error("SetIPv4Conf(forwarding) succeeded; want a refusal")
	}
}
