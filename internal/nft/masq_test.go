package nft

import (
	"net"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/knit-cni/knit/pkg/cni"
)

var (
	ownerA = Owner{Network: "masqnet", ContainerID: "ctr-a", IfName: "eth0"}
	ownerB = Owner{Network: "masqnet", ContainerID: "ctr-b", IfName: "eth0"}
	ownerC = Owner{Network: "masqnet", ContainerID: "ctr-c", IfName: "net1"}
)

func TestAddCreatesTablesChainsSetsAndElements(t *testing.T) {
	m, fd := newTestMasq(t)
	if err := m.Add(ownerA, cidrs(t, "10.22.0.5/16", "fd00:22::5/64")); err != nil {
		t.Fatal(err)
	}
	c := rawConn(t, fd)
	for _, tc := range []struct {
		f           *family
		addr, comm  string
		subnetStart string
	}{
		{ipv4, "10.22.0.5", ownerA.String(), "10.22.0.0"},
		{ipv6, "fd00:22::5", ownerA.String(), "fd00:22::"},
	} {
		obj := objectsFor(tc.f, ownerA.Network)
		chains, err := c.ListChainsOfTableFamily(tc.f.table.Family)
		if err != nil {
			t.Fatal(err)
		}
		names := map[string]*nftables.Chain{}
		for _, ch := range chains {
			if ch.Table.Name == TableName {
				names[ch.Name] = ch
			}
		}
		pr := names[PostroutingChain]
		if pr == nil || pr.Type != nftables.ChainTypeNAT || pr.Hooknum == nil || *pr.Hooknum != *nftables.ChainHookPostrouting ||
			pr.Priority == nil || *pr.Priority != *nftables.ChainPriorityNATSource {
			t.Fatalf("%s: base chain postrouting missing or wrong: %+v", tc.f.name, pr)
		}
		if names[obj.chain.Name] == nil {
			t.Fatalf("%s: chain %s missing (have %v)", tc.f.name, obj.chain.Name, names)
		}
		jumps := rules(t, c, tc.f, PostroutingChain)
		if len(jumps) != 1 || !obj.isJump(jumps[0]) {
			t.Fatalf("%s: postrouting rules = %d, want 1 jump to %s", tc.f.name, len(jumps), obj.chain.Name)
		}
		if n, ok := ParseNetworkTag(jumps[0].UserData); !ok || n != ownerA.Network {
			t.Errorf("%s: jump rule tag = %q, %v", tc.f.name, n, ok)
		}
		mr := rules(t, c, tc.f, obj.chain.Name)
		if len(mr) != 3 || !hasExpr[*expr.Lookup](mr[0]) || !hasExpr[*expr.Bitwise](mr[1]) || !hasExpr[*expr.Masq](mr[2]) {
			t.Fatalf("%s: chain %s has %d rules, want subnet return, multicast return, masquerade", tc.f.name, obj.chain.Name, len(mr))
		}
		if got := elements(t, c, obj.srcs); len(got) != 1 || got[tc.addr] != tc.comm {
			t.Errorf("%s: srcs = %v, want %s -> %s", tc.f.name, got, tc.addr, tc.comm)
		}
		if got := elements(t, c, obj.nets); len(got) == 0 {
			t.Errorf("%s: nets empty", tc.f.name)
		} else if _, ok := got[tc.subnetStart]; !ok {
			t.Errorf("%s: nets = %v, want an interval starting at %s", tc.f.name, got, tc.subnetStart)
		}
	}

	// Idempotent, and a second attachment reuses the network's objects.
	if err := m.Add(ownerA, cidrs(t, "10.22.0.5/16", "fd00:22::5/64")); err != nil {
		t.Fatal(err)
	}
	if err := m.Add(ownerB, cidrs(t, "10.22.0.6/16")); err != nil {
		t.Fatal(err)
	}
	if n := len(rules(t, c, ipv4, PostroutingChain)); n != 1 {
		t.Errorf("postrouting has %d rules after repeated adds, want 1", n)
	}
	if n := len(rules(t, c, ipv4, objectsFor(ipv4, "masqnet").chain.Name)); n != 3 {
		t.Errorf("network chain has %d rules after repeated adds, want 3", n)
	}
	got, err := m.List("masqnet")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"masqnet/ctr-a/eth0 10.22.0.5", "masqnet/ctr-a/eth0 fd00:22::5", "masqnet/ctr-b/eth0 10.22.0.6"}
	if s := entryStrings(got); strings.Join(s, ",") != strings.Join(want, ",") {
		t.Errorf("List = %v, want %v", s, want)
	}
	if err := m.Check(ownerA, nil); err != nil {
		t.Errorf("Check without addresses: %v", err)
	}
}

func entryStrings(es []Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Owner.String()+" "+e.Addr.String())
	}
	return out
}

func TestDelRemovesOnlyItsOwnElement(t *testing.T) {
	m, fd := newTestMasq(t)
	c := rawConn(t, fd)
	srcs := objectsFor(ipv4, "masqnet").srcs
	must(t, m.Add(ownerA, cidrs(t, "10.22.0.5/16")))
	must(t, m.Add(ownerB, cidrs(t, "10.22.0.6/16")))
	must(t, m.Add(ownerC, cidrs(t, "10.22.0.7/16", "fd00:22::7/64")))

	// Someone else's address given to Del is left alone.
	must(t, m.Del(ownerA, cidrs(t, "10.22.0.6/16")))
	if got := elements(t, c, srcs); len(got) != 3 {
		t.Fatalf("Del of another owner's address removed it: %v", got)
	}
	must(t, m.Del(ownerA, cidrs(t, "10.22.0.5/16")))
	got := elements(t, c, srcs)
	if _, ok := got["10.22.0.5"]; ok || len(got) != 2 {
		t.Fatalf("after Del(A): %v, want only B's and C's", got)
	}
	// Again, and for a network that never existed: success.
	must(t, m.Del(ownerA, cidrs(t, "10.22.0.5/16")))
	must(t, m.Del(Owner{Network: "nonet", ContainerID: "x", IfName: "eth0"}, cidrs(t, "10.9.0.5/16")))
	must(t, m.Del(Owner{Network: "nonet", ContainerID: "x", IfName: "eth0"}, nil))

	// No addresses (no prevResult): found by owner comment, both families.
	must(t, m.Del(ownerC, nil))
	got = elements(t, c, srcs)
	if len(got) != 1 || got["10.22.0.6"] != ownerB.String() {
		t.Fatalf("after Del(C, nil): %v, want only B's", got)
	}
	if got := elements(t, c, objectsFor(ipv6, "masqnet").srcs); len(got) != 0 {
		t.Fatalf("after Del(C, nil) ip6 srcs = %v, want empty", got)
	}
	// The network's objects stay.
	if n := len(rules(t, c, ipv6, PostroutingChain)); n != 1 {
		t.Errorf("ip6 postrouting has %d rules after Del, want 1 (kept)", n)
	}
}

func TestAddTakesOverStaleAddress(t *testing.T) {
	m, fd := newTestMasq(t)
	c := rawConn(t, fd)
	must(t, m.Add(ownerA, cidrs(t, "10.22.0.5/16")))
	must(t, m.Add(ownerB, cidrs(t, "10.22.0.5/16")))
	srcs := objectsFor(ipv4, "masqnet").srcs
	if got := elements(t, c, srcs); got["10.22.0.5"] != ownerB.String() {
		t.Fatalf("after takeover: %v, want B", got)
	}
	// The late DEL of the old owner must not remove B's masquerade.
	must(t, m.Del(ownerA, cidrs(t, "10.22.0.5/16")))
	if got := elements(t, c, srcs); got["10.22.0.5"] != ownerB.String() {
		t.Fatalf("stale DEL removed the new owner's element: %v", got)
	}
	must(t, m.Check(ownerB, cidrs(t, "10.22.0.5/16")))
	err := m.Check(ownerA, cidrs(t, "10.22.0.5/16"))
	if err == nil || !strings.Contains(err.Error(), "belongs to") {
		t.Errorf("Check(A) after takeover = %v, want 'belongs to'", err)
	}
}

func TestCheckNamesWhatIsMissing(t *testing.T) {
	m, fd := newTestMasq(t)
	c := rawConn(t, fd)
	must(t, m.Add(ownerA, cidrs(t, "10.22.0.5/16")))
	must(t, m.Add(ownerB, cidrs(t, "10.22.0.6/16")))
	must(t, m.Check(ownerA, cidrs(t, "10.22.0.5/16")))
	obj := objectsFor(ipv4, "masqnet")

	// Element removed behind knit's back.
	must(t, c.SetDeleteElements(obj.srcs, []nftables.SetElement{{Key: net.ParseIP("10.22.0.5").To4()}}))
	must(t, c.Flush())
	err := m.Check(ownerA, cidrs(t, "10.22.0.5/16"))
	want := "masquerade for 10.22.0.5 (network masqnet) missing: set element not found"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Check = %v, want %q", err, want)
	}
	if cni.Code(err) != cni.ErrInternal {
		t.Errorf("Check error code = %d, want %d", cni.Code(err), cni.ErrInternal)
	}
	if err := m.Check(ownerA, nil); err == nil {
		t.Error("Check(A, nil) succeeded with A's element gone")
	}
	// B is still fine; then its jump rule goes.
	must(t, m.Check(ownerB, cidrs(t, "10.22.0.6/16")))
	jumps := rules(t, c, ipv4, PostroutingChain)
	must(t, c.DelRule(jumps[0]))
	must(t, c.Flush())
	err = m.Check(ownerB, cidrs(t, "10.22.0.6/16"))
	if err == nil || !strings.Contains(err.Error(), "jump "+obj.chain.Name+"\" not found") {
		t.Fatalf("Check after removing the jump rule = %v", err)
	}
	// Re-adding the rule by hand restores it; removing the masquerade rule is caught.
	mr := rules(t, c, ipv4, obj.chain.Name)
	must(t, c.DelRule(mr[2]))
	c.AddRule(&nftables.Rule{Table: ipv4.table, Chain: postrouting(ipv4), Exprs: obj.jumpRule()})
	must(t, c.Flush())
	err = m.Check(ownerB, cidrs(t, "10.22.0.6/16"))
	if err == nil || !strings.Contains(err.Error(), "masquerade rule not found") {
		t.Fatalf("Check after removing the masquerade rule = %v", err)
	}
}

func TestGCKeepsListedOwners(t *testing.T) {
	m, fd := newTestMasq(t)
	c := rawConn(t, fd)
	must(t, m.Add(ownerA, cidrs(t, "10.22.0.5/16", "fd00:22::5/64")))
	must(t, m.Add(ownerB, cidrs(t, "10.22.0.6/16")))
	must(t, m.Add(ownerC, cidrs(t, "10.22.0.7/16")))
	other := Owner{Network: "othernet", ContainerID: "ctr-a", IfName: "eth0"}
	must(t, m.Add(other, cidrs(t, "10.33.0.5/16")))

	must(t, m.GC("masqnet", []Owner{ownerB}))
	got, err := m.List("masqnet")
	must(t, err)
	if s := entryStrings(got); len(s) != 1 || s[0] != "masqnet/ctr-b/eth0 10.22.0.6" {
		t.Fatalf("after GC keeping B: %v", s)
	}
	// ip6 lost its last attachment: its network objects are gone, ip's stay.
	obj6 := objectsFor(ipv6, "masqnet")
	if n := len(rules(t, c, ipv6, PostroutingChain)); n != 0 {
		t.Errorf("ip6 postrouting still has %d rules", n)
	}
	if _, err := c.GetSetByName(ipv6.table, obj6.srcs.Name); err == nil {
		t.Errorf("ip6 set %s still exists", obj6.srcs.Name)
	}
	must(t, m.Check(ownerB, cidrs(t, "10.22.0.6/16")))

	must(t, m.GC("masqnet", nil))
	if got, _ := m.List("masqnet"); len(got) != 0 {
		t.Fatalf("after GC keeping none: %v", got)
	}
	pr := rules(t, c, ipv4, PostroutingChain)
	if len(pr) != 1 || !objectsFor(ipv4, "othernet").isJump(pr[0]) {
		t.Fatalf("ip postrouting after GC: %d rules, want only othernet's jump", len(pr))
	}
	must(t, m.Check(other, cidrs(t, "10.33.0.5/16")))
	// GC of an unknown network and a second GC are no-ops.
	must(t, m.GC("nosuchnet", nil))
	must(t, m.GC("masqnet", nil))
	// The network comes back on the next Add.
	must(t, m.Add(ownerA, cidrs(t, "10.22.0.5/16")))
	must(t, m.Check(ownerA, cidrs(t, "10.22.0.5/16")))
}

func TestSubnetOverlap(t *testing.T) {
	m, _ := newTestMasq(t)
	must(t, m.Add(ownerA, cidrs(t, "10.22.0.5/16")))
	// A narrower subnet inside the recorded one is fine.
	must(t, m.Add(ownerB, cidrs(t, "10.22.1.5/24")))
	must(t, m.Check(ownerB, cidrs(t, "10.22.1.5/24")))
	// A second, disjoint range of the same network is fine.
	must(t, m.Add(ownerC, cidrs(t, "10.23.0.5/24")))
	must(t, m.Check(ownerC, cidrs(t, "10.23.0.5/24")))
	// A wider subnet partly overlapping is a configuration conflict.
	o := Owner{Network: "masqnet", ContainerID: "ctr-d", IfName: "eth0"}
	err := m.Add(o, cidrs(t, "10.22.0.9/15"))
	if err == nil || cni.Code(err) != cni.ErrInvalidNetworkConfig || !strings.Contains(err.Error(), "overlaps") {
		t.Fatalf("Add with an overlapping subnet = %v", err)
	}
	if got, _ := m.List("masqnet"); len(got) != 3 {
		t.Errorf("a failed Add changed the set: %v", entryStrings(got))
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	m, fd := newTestMasq(t)
	for _, tc := range []struct {
		o     Owner
		addrs []net.IPNet
		code  uint
	}{
		{Owner{Network: "", ContainerID: "c", IfName: "eth0"}, cidrs(t, "10.22.0.5/16"), cni.ErrInvalidNetworkConfig},
		{Owner{Network: "n", ContainerID: "", IfName: "eth0"}, cidrs(t, "10.22.0.5/16"), cni.ErrUnknownContainer},
		{ownerA, []net.IPNet{{IP: net.ParseIP("10.22.0.5")}}, cni.ErrInvalidNetworkConfig},
		{ownerA, []net.IPNet{{IP: nil, Mask: net.CIDRMask(16, 32)}}, cni.ErrInvalidNetworkConfig},
		{ownerA, cidrs(t, "0.0.0.0/16"), cni.ErrInvalidNetworkConfig},
		{ownerA, cidrs(t, "10.22.0.5/0"), cni.ErrInvalidNetworkConfig},
		{ownerA, cidrs(t, "10.22.0.5/16", "224.0.0.1/4"), cni.ErrInvalidNetworkConfig},
	} {
		err := m.Add(tc.o, tc.addrs)
		if err == nil || cni.Code(err) != tc.code {
			t.Errorf("Add(%+v, %v) = %v (code %d), want code %d", tc.o, tc.addrs, err, cni.Code(err), tc.code)
		}
	}
	if tables, err := rawConn(t, fd).ListTables(); err != nil || len(tables) != 0 {
		t.Fatalf("bad input created tables: %v, %v", tables, err)
	}
	if err := m.Add(ownerA, nil); err != nil {
		t.Errorf("Add with no addresses: %v", err)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
