package nft

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/nftables"
)

// BenchmarkAddDel measures one container's Add plus Del with 10 and 2,000
// other attachments in the network. Neither dumps a set, so the per-op cost
// should not grow with the set (target: ≤ 1.2× at 2,000).
func BenchmarkAddDel(b *testing.B) {
	for _, existing := range []int{10, 2000} {
		b.Run(fmt.Sprintf("existing=%d", existing), func(b *testing.B) {
			m, fd := newTestMasq(b)
			fillSet(b, m, fd, existing)
			o := Owner{Network: "benchnet", ContainerID: "bench", IfName: "eth0"}
			addr := cidrs(b, "10.60.200.1/16")
			b.ResetTimer()
			for b.Loop() {
				if err := m.Add(o, addr); err != nil {
					b.Fatal(err)
				}
				if err := m.Del(o, addr); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// fillSet creates network benchnet in m's namespace with existing
// attachments, the extra ones added in bulk as earlier ADDs would have.
func fillSet(tb testing.TB, m *Masq, fd, existing int) {
	tb.Helper()
	must(tb, m.Add(Owner{Network: "benchnet", ContainerID: "seed", IfName: "eth0"}, cidrs(tb, "10.60.255.254/16")))
	c := rawConn(tb, fd)
	obj := objectsFor(ipv4, "benchnet")
	a := netip.MustParseAddr("10.60.0.1")
	for i := 1; i < existing; i++ {
		o := Owner{Network: "benchnet", ContainerID: fmt.Sprintf("c%d", i), IfName: "eth0"}
		must(tb, c.SetAddElements(obj.srcs, []nftables.SetElement{{Key: a.AsSlice(), Comment: o.String()}}))
		a = a.Next()
		if i%256 == 0 { // keep each batch under the netlink message limit
			must(tb, c.Flush())
		}
	}
	must(tb, c.Flush())
	if got, _ := m.List("benchnet"); len(got) != existing {
		tb.Fatalf("set holds %d elements, want %d", len(got), existing)
	}
}

// TestAddDelCostFlat interleaves Add+Del with 10 and with 2,000 attachments
// (so machine load hits both alike) and compares the medians. A per-op dump
// of the set would cost several times more at 2,000; the target is ≤ 1.2×,
// the assertion leaves room for a noisy shared machine.
func TestAddDelCostFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("timing test")
	}
	small, fdS := newTestMasq(t)
	big, fdB := newTestMasq(t)
	fillSet(t, small, fdS, 10)
	fillSet(t, big, fdB, 2000)
	o := Owner{Network: "benchnet", ContainerID: "bench", IfName: "eth0"}
	addr := cidrs(t, "10.60.200.1/16")
	var ds, db []time.Duration
	for range 500 {
		for _, x := range []struct {
			m *Masq
			d *[]time.Duration
		}{{small, &ds}, {big, &db}} {
			start := time.Now()
			must(t, x.m.Add(o, addr))
			must(t, x.m.Del(o, addr))
			*x.d = append(*x.d, time.Since(start))
		}
	}
	slices.Sort(ds)
	slices.Sort(db)
	ms, mb := ds[len(ds)/2], db[len(db)/2]
	ratio := float64(mb) / float64(ms)
	t.Logf("Add+Del median: %v with 10 attachments, %v with 2000 (ratio %.2f)", ms, mb, ratio)
	if ratio > 1.5 {
		t.Errorf("Add+Del with 2000 attachments costs %.2f× that with 10, want ≤ 1.2×", ratio)
	}
}

// TestGCLargeSet removes more elements than fit in one netlink batch.
func TestGCLargeSet(t *testing.T) {
	m, fd := newTestMasq(t)
	fillSet(t, m, fd, 3000)
	seed := Owner{Network: "benchnet", ContainerID: "seed", IfName: "eth0"}
	must(t, m.GC("benchnet", []Owner{seed}))
	got, err := m.List("benchnet")
	must(t, err)
	if len(got) != 1 || got[0].Owner != seed {
		t.Fatalf("after GC: %d entries, want only the seed's", len(got))
	}
	must(t, m.Check(seed, cidrs(t, "10.60.255.254/16")))
}
