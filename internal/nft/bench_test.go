package nft

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"testing"

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

// TestAddDelNoDump proves structurally what BenchmarkAddDel measures: with
// thousands of attachments present, a container's Add, Check and Del given
// its addresses dump no set or chain, and Del/Check look up exactly one
// element per address, so their cost does not depend on the set's size.
// (Timing belongs in the benchmark, not in a unit test.)
// lookups counts m's single-element lookups so far (its lookup socket is
// opened on first use).
func lookups(m *Masq) int {
	if m.elems == nil {
		return 0
	}
	return m.elems.requests
}

func TestAddDelNoDump(t *testing.T) {
	m, fd := newTestMasq(t)
	fillSet(t, m, fd, 2000)
	o := Owner{Network: "benchnet", ContainerID: "bench", IfName: "eth0"}
	addr := cidrs(t, "10.60.200.1/16")
	must(t, m.Add(o, addr)) // warm: sockets open
	must(t, m.Del(o, addr))
	d0, l0 := dumps.Load(), m.elems.requests
	for range 20 {
		must(t, m.Add(o, addr))
		must(t, m.Del(o, addr))
	}
	if d := dumps.Load() - d0; d != 0 {
		t.Errorf("20 Add+Del dumped %d times, want 0", d)
	}
	if l := m.elems.requests - l0; l != 20 {
		t.Errorf("20 Del of one address sent %d element lookups, want 20", l)
	}
}

// TestPortMapFirewallNoDump does the same for port mappings and firewall
// entries.
func TestPortMapFirewallNoDump(t *testing.T) {
	_, fd := testNS(t, "nfd")
	lockPath := filepath.Join(t.TempDir(), "nft.lock")
	pm := NewPortMap(WithNetNS(fd), WithLockFile(lockPath))
	defer pm.Close()
	fw := NewFirewall(WithNetNS(fd), WithLockFile(lockPath))
	defer fw.Close()
	a := netip.MustParseAddr("10.61.0.2")
	for i := range 300 {
		o := Owner{Network: "fillnet", ContainerID: fmt.Sprintf("c%d", i), IfName: "eth0"}
		addr := []net.IPNet{{IP: a.AsSlice(), Mask: net.CIDRMask(16, 32)}}
		must(t, pm.Add(o, addr, []PortMapping{{HostPort: uint16(20000 + i), ContainerPort: 80, Protocol: "tcp"}}, PortMapOptions{SNAT: true}))
		must(t, fw.Add(o, addr, "kbr0"))
		a = a.Next()
	}
	o := Owner{Network: "fillnet", ContainerID: "bench", IfName: "eth0"}
	addr := cidrs(t, "10.61.200.1/16")
	maps := []PortMapping{{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}, {HostPort: 8081, ContainerPort: 81, Protocol: "tcp"}}
	d0, l0 := dumps.Load(), lookups(pm.base)+lookups(fw.base)
	for range 10 {
		must(t, pm.Add(o, addr, maps, PortMapOptions{SNAT: true}))
		must(t, fw.Add(o, addr, "kbr0"))
		must(t, fw.Del(o, addr))
		must(t, pm.Del(o, addr, maps))
	}
	if d := dumps.Load() - d0; d != 0 {
		t.Errorf("10 portmap+firewall Add+Del dumped %d times, want 0", d)
	}
	// Per round: 4 lookups in pm.Add (one per mapping, one per masquerade
	// prefix length: the subnet's and localhost's), 2 in pm.Del plus 3
	// masquerade keys, 1 in fw.Del.
	if l := lookups(pm.base) + lookups(fw.base) - l0; l != 10*(4+2+3+1) {
		t.Errorf("10 rounds sent %d element lookups, want %d", l, 10*(4+2+3+1))
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

// BenchmarkPortMapAddDel measures one container's port mapping Add plus Del
// (one TCP mapping, hairpin and localhost masquerade) in-process.
func BenchmarkPortMapAddDel(b *testing.B) {
	_, fd := testNS(b, "nfb")
	pm := NewPortMap(WithNetNS(fd), WithLockFile(filepath.Join(b.TempDir(), "nft.lock")))
	defer pm.Close()
	o := Owner{Network: "benchnet", ContainerID: "bench", IfName: "eth0"}
	addr := cidrs(b, "10.62.0.2/24")
	maps := []PortMapping{{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}}
	must(b, pm.Add(o, addr, maps, PortMapOptions{SNAT: true}))
	must(b, pm.Del(o, addr, maps))
	for b.Loop() {
		must(b, pm.Add(o, addr, maps, PortMapOptions{SNAT: true}))
		must(b, pm.Del(o, addr, maps))
	}
}
