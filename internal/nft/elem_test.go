package nft

import (
	"net/netip"
	"testing"

	"github.com/google/nftables"
)

// TestLookupAll: one train of lookups answers each query as lookup would,
// in order — an element that exists (with its comment), a key that does
// not, a set that does not exist — and leaves no reply behind: the same
// reader's next lookups still get their own answers.
func TestLookupAll(t *testing.T) {
	m, fd := newTestMasq(t)
	o := Owner{Network: "lookupall", ContainerID: "c1", IfName: "eth0"}
	if err := m.Add(o, cidrs(t, "10.91.0.5/24")); err != nil {
		t.Fatal(err)
	}
	srcs := objectsFor(ipv4, o.Network).srcs
	r, err := dialElemReader(fd)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	present := netip.MustParseAddr("10.91.0.5").AsSlice()
	absent := netip.MustParseAddr("10.91.0.6").AsSlice()
	noSet := &nftables.Set{Table: srcs.Table, Name: "no-such-set"}
	qs := []elemQuery{{srcs, present}, {srcs, absent}, {noSet, present}, {srcs, present}}
	got, err := r.lookupAll(qs)
	if err != nil {
		t.Fatalf("lookupAll: %v", err)
	}
	want := []bool{true, false, false, true}
	if len(got) != len(want) {
		t.Fatalf("lookupAll returned %d answers for %d queries", len(got), len(qs))
	}
	for i, a := range got {
		if a.found != want[i] {
			t.Errorf("query %d: found %v, want %v", i, a.found, want[i])
		}
		if a.found && a.elem.comment != o.String() {
			t.Errorf("query %d: comment %q, want %q", i, a.elem.comment, o.String())
		}
	}
	if r.requests != len(qs) {
		t.Errorf("requests counted %d, want %d", r.requests, len(qs))
	}
	// Nothing left over: single lookups after the train get their own replies.
	for i := 0; i < 2; i++ {
		if c, found, err := r.get(srcs, absent); err != nil || found {
			t.Fatalf("get(absent) after lookupAll = %q, %v, %v; want not found", c, found, err)
		}
		if c, found, err := r.get(srcs, present); err != nil || !found || c != o.String() {
			t.Fatalf("get(present) after lookupAll = %q, %v, %v; want %q", c, found, err, o.String())
		}
	}
	if got, err := r.lookupAll(nil); err != nil || got != nil {
		t.Errorf("lookupAll(nil) = %v, %v; want nothing", got, err)
	}
}
