package nft

import (
	"fmt"
	"net/netip"
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
			must(b, m.Add(Owner{Network: "benchnet", ContainerID: "seed", IfName: "eth0"}, cidrs(b, "10.60.255.254/16")))
			// Fill the set in bulk, as earlier ADDs would have.
			c := rawConn(b, fd)
			obj := objectsFor(ipv4, "benchnet")
			base := netip.MustParseAddr("10.60.0.1")
			a := base
			for i := 1; i < existing; i++ {
				o := Owner{Network: "benchnet", ContainerID: fmt.Sprintf("c%d", i), IfName: "eth0"}
				must(b, c.SetAddElements(obj.srcs, []nftables.SetElement{{Key: a.AsSlice(), Comment: o.String()}}))
				a = a.Next()
				if i%256 == 0 { // keep each batch under the netlink message limit
					must(b, c.Flush())
				}
			}
			must(b, c.Flush())
			if got, _ := m.List("benchnet"); len(got) != existing {
				b.Fatalf("set holds %d elements, want %d", len(got), existing)
			}
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
