package nft

import (
	"net"
	"path/filepath"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/knit-cni/knit/internal/nstest"
	vnetns "github.com/vishvananda/netns"
)

// testNS creates a test namespace and returns its path and an open fd.
func testNS(t testing.TB, prefix string) (string, int) {
	t.Helper()
	path := nstest.New(t, prefix)
	h, err := vnetns.GetFromPath(path)
	if err != nil {
		t.Fatalf("opening %s: %v", path, err)
	}
	t.Cleanup(func() { h.Close() })
	return path, int(h)
}

// newTestMasq returns a Masq working in a fresh test namespace, with a lock
// file of its own, and that namespace's fd.
func newTestMasq(t testing.TB) (*Masq, int) {
	t.Helper()
	_, fd := testNS(t, "nft")
	m := NewMasq(WithNetNS(fd), WithLockFile(filepath.Join(t.TempDir(), "nft.lock")))
	t.Cleanup(func() { m.Close() })
	return m, fd
}

func cidr(t testing.TB, s string) net.IPNet {
	t.Helper()
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	n.IP = ip
	return *n
}

func cidrs(t testing.TB, ss ...string) []net.IPNet {
	var out []net.IPNet
	for _, s := range ss {
		out = append(out, cidr(t, s))
	}
	return out
}

func rawConn(t testing.TB, fd int) *nftables.Conn {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(fd))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// rules lists a chain's rules, failing the test on error.
func rules(t testing.TB, c *nftables.Conn, f *family, chain string) []*nftables.Rule {
	t.Helper()
	rs, err := c.GetRules(f.table, &nftables.Chain{Name: chain, Table: f.table})
	if err != nil {
		t.Fatalf("listing %s %s %s: %v", f.name, TableName, chain, err)
	}
	return rs
}

// elements lists a set's elements as address -> comment.
func elements(t testing.TB, c *nftables.Conn, s *nftables.Set) map[string]string {
	t.Helper()
	els, err := c.GetSetElements(s)
	if err != nil {
		t.Fatalf("listing set %s: %v", s.Name, err)
	}
	out := map[string]string{}
	for _, e := range els {
		out[net.IP(e.Key).String()] = e.Comment
	}
	return out
}

func hasExpr[T expr.Any](r *nftables.Rule) bool {
	for _, e := range r.Exprs {
		if _, ok := e.(T); ok {
			return true
		}
	}
	return false
}
