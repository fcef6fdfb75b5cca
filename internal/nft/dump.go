package nft

import (
	"sync/atomic"

	"github.com/google/nftables"
)

// dumps counts set and rule dumps, whose cost grows with the number of
// elements or rules; tests use it to prove that the per-container
// operations (Add, and Del/Check given addresses) never dump.
var dumps atomic.Int64

func dumpElements(c *nftables.Conn, s *nftables.Set) ([]nftables.SetElement, error) {
	dumps.Add(1)
	return c.GetSetElements(s)
}

func dumpRules(c *nftables.Conn, t *nftables.Table, ch *nftables.Chain) ([]*nftables.Rule, error) {
	dumps.Add(1)
	return c.GetRules(t, ch)
}
