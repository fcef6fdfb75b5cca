package hostlocal

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/knit-cni/knit/plugins/ipam/hostlocal/store"
)

// populate fills a /16 with n allocations the way knit writes them (with
// owner hints) and returns the config.
func populate(b *testing.B, n int) string {
	b.Helper()
	dir := b.TempDir()
	conf := netConf("1.0.0", dir, `"ranges":[[{"subnet":"10.20.0.0/16"}]]`)
	st, err := store.Open(dir, "testnet")
	if err != nil {
		b.Fatal(err)
	}
	a := netip.MustParseAddr("10.20.0.2")
	for i := 0; i < n; i++ {
		if _, err := st.Reserve(a, store.Owner{ContainerID: fmt.Sprintf("pre%d", i), IfName: "eth0"}, 0); err != nil {
			b.Fatal(err)
		}
		a = a.Next()
	}
	st.Close()
	return conf
}

// BenchmarkAddDel measures one ADD and one DEL in-process with 5000
// addresses already allocated.
func BenchmarkAddDel(b *testing.B) {
	conf := populate(b, 5000)
	for i := 0; b.Loop(); i++ {
		cid := fmt.Sprintf("b%d", i)
		mustOK(b, run(b, call{cmd: "ADD", cid: cid, conf: conf}))
		mustOK(b, run(b, call{cmd: "DEL", cid: cid, conf: conf}))
	}
}

// BenchmarkExecAddDel compares process-level ADD+DEL of knit and the
// reference with 5000 addresses allocated.
func BenchmarkExecAddDel(b *testing.B) {
	for _, impl := range []struct{ name, bin string }{{"knit", ""}, {"reference", referencePlugin}} {
		b.Run(impl.name, func(b *testing.B) {
			conf := populate(b, 5000)
			for i := 0; b.Loop(); i++ {
				cid := fmt.Sprintf("b%d", i)
				mustOK(b, runBinary(b, impl.bin, call{cmd: "ADD", cid: cid, conf: conf}))
				mustOK(b, runBinary(b, impl.bin, call{cmd: "DEL", cid: cid, conf: conf}))
			}
		})
	}
}

// BenchmarkAdd measures one in-process ADD of a new attachment with n
// addresses already allocated: with the sealed owner index the time does
// not grow with n (before it, ADD listed the directory).
func BenchmarkAdd(b *testing.B) {
	for _, n := range []int{10, 1000, 5000} {
		b.Run(fmt.Sprintf("allocated=%d", n), func(b *testing.B) {
			conf := populate(b, n)
			for i := 0; b.Loop(); i++ {
				mustOK(b, run(b, call{cmd: "ADD", cid: fmt.Sprintf("b%d", i), conf: conf}))
			}
		})
	}
}
