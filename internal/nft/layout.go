package nft

import (
	"crypto/sha256"
	"encoding/hex"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// TableName is knit's table in each address family (`ip knit`, `ip6 knit`).
// Masquerade, and later port mapping and the firewall, keep all their chains
// and sets there, so `nft delete table ip knit` removes everything knit made.
const TableName = "knit"

// PostroutingChain is the base chain (type nat, hook postrouting, priority
// srcnat) holding one jump rule per network with ipMasq.
const PostroutingChain = "postrouting"

// family describes one address family's table and header layout.
type family struct {
	name     string // "ip" or "ip6", as nft prints it
	table    *nftables.Table
	keyType  nftables.SetDatatype
	addrLen  uint32
	saddrOff uint32 // source address offset in the network header
	daddrOff uint32 // destination address offset
	mcast    netip.Prefix
}

var (
	ipv4 = &family{
		name:     "ip",
		table:    &nftables.Table{Name: TableName, Family: nftables.TableFamilyIPv4},
		keyType:  nftables.TypeIPAddr,
		addrLen:  4,
		saddrOff: 12,
		daddrOff: 16,
		mcast:    netip.MustParsePrefix("224.0.0.0/4"),
	}
	ipv6 = &family{
		name:     "ip6",
		table:    &nftables.Table{Name: TableName, Family: nftables.TableFamilyIPv6},
		keyType:  nftables.TypeIP6Addr,
		addrLen:  16,
		saddrOff: 8,
		daddrOff: 24,
		mcast:    netip.MustParsePrefix("ff00::/8"),
	}
	families = []*family{ipv4, ipv6}
)

func familyOf(a netip.Addr) *family {
	if a.Is4() {
		return ipv4
	}
	return ipv6
}

// netID is the short, stable name part for a network: 12 hex digits of the
// SHA-256 of its name (48 bits; the owner comments carry the full name, so a
// collision is detectable rather than silent).
func netID(network string) string {
	sum := sha256.Sum256([]byte(network))
	return hex.EncodeToString(sum[:6])
}

// netObjects are the nftables objects of one network in one family.
type netObjects struct {
	fam     *family
	network string
	chain   *nftables.Chain // masq-<id>: return for local and multicast, else masquerade
	srcs    *nftables.Set   // srcs-<id>: container addresses, one element per attachment
	nets    *nftables.Set   // nets-<id>: the network's subnets (interval set)
}

func objectsFor(fam *family, network string) *netObjects {
	id := netID(network)
	return &netObjects{
		fam:     fam,
		network: network,
		chain:   &nftables.Chain{Name: "masq-" + id, Table: fam.table},
		srcs: &nftables.Set{Table: fam.table, Name: "srcs-" + id, KeyType: fam.keyType,
			Comment: networkPrefix + network},
		nets: &nftables.Set{Table: fam.table, Name: "nets-" + id, KeyType: fam.keyType, Interval: true,
			Comment: networkPrefix + network},
	}
}

func postrouting(fam *family) *nftables.Chain {
	policy := nftables.ChainPolicyAccept
	return &nftables.Chain{
		Name:     PostroutingChain,
		Table:    fam.table,
		Type:     nftables.ChainTypeNAT,
		Hooknum:  nftables.ChainHookPostrouting,
		Priority: nftables.ChainPriorityNATSource,
		Policy:   &policy,
	}
}

// Set IDs only need to be unique within one batch; fixed ones keep
// nftables' global ID counter (unsynchronised across Conns) out of the way.
func (o *netObjects) setIDs() (srcs, nets uint32) {
	if o.fam == ipv4 {
		return 1, 2
	}
	return 3, 4
}

// queueCreate adds the table, base chain and the network's chain, sets and
// rules to the batch. Tables, chains and sets are created idempotently; the
// rules are not, so callers queue this only when the srcs set is missing
// (under the lock), and the network chain is flushed first so it always ends
// up with exactly its three rules.
func (o *netObjects) queueCreate(c *nftables.Conn) error {
	c.AddTable(o.fam.table)
	c.AddChain(postrouting(o.fam))
	o.srcs.ID, o.nets.ID = o.setIDs()
	if err := c.AddSet(o.srcs, nil); err != nil {
		return err
	}
	if err := c.AddSet(o.nets, nil); err != nil {
		return err
	}
	c.AddChain(o.chain)
	c.FlushChain(o.chain)
	tag := NetworkTag(o.network)
	for _, exprs := range o.masqRules() {
		c.AddRule(&nftables.Rule{Table: o.fam.table, Chain: o.chain, Exprs: exprs, UserData: tag})
	}
	c.AddRule(&nftables.Rule{Table: o.fam.table, Chain: postrouting(o.fam), Exprs: o.jumpRule(), UserData: tag})
	return nil
}

// queueDelete removes the network's jump rules (by handle), chain and sets.
func (o *netObjects) queueDelete(c *nftables.Conn, jumps []*nftables.Rule) error {
	for _, r := range jumps {
		if err := c.DelRule(r); err != nil {
			return err
		}
	}
	c.DelChain(o.chain)
	c.DelSet(o.srcs)
	c.DelSet(o.nets)
	return nil
}

// jumpRule: ip saddr @srcs-<id> jump masq-<id>
func (o *netObjects) jumpRule() []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: o.fam.saddrOff, Len: o.fam.addrLen},
		&expr.Lookup{SourceRegister: 1, SetName: o.srcs.Name, SetID: o.srcs.ID},
		&expr.Verdict{Kind: expr.VerdictJump, Chain: o.chain.Name},
	}
}

// masqRules: ip daddr @nets-<id> return; ip daddr <multicast> return; masquerade
func (o *netObjects) masqRules() [][]expr.Any {
	fam := o.fam
	maskBytes := prefixMask(fam.mcast)
	return [][]expr.Any{
		{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: fam.daddrOff, Len: fam.addrLen},
			&expr.Lookup{SourceRegister: 1, SetName: o.nets.Name, SetID: o.nets.ID},
			&expr.Verdict{Kind: expr.VerdictReturn},
		},
		{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: fam.daddrOff, Len: fam.addrLen},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: fam.addrLen, Mask: maskBytes, Xor: make([]byte, fam.addrLen)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: fam.mcast.Addr().AsSlice()},
			&expr.Verdict{Kind: expr.VerdictReturn},
		},
		{
			&expr.Masq{},
		},
	}
}

// prefixMask returns the netmask bytes of p.
func prefixMask(p netip.Prefix) []byte {
	n := p.Addr().BitLen() / 8
	m := make([]byte, n)
	for i := 0; i < p.Bits(); i++ {
		m[i/8] |= 0x80 >> (i % 8)
	}
	return m
}

// intervalElems returns the interval set elements covering p: its first
// address and, unless p runs to the end of the address space, the address
// after its last as the interval end.
func intervalElems(p netip.Prefix) []nftables.SetElement {
	p = p.Masked()
	first := p.Addr()
	elems := []nftables.SetElement{{Key: first.AsSlice()}}
	last := lastAddr(p)
	if next := last.Next(); next.IsValid() {
		elems = append(elems, nftables.SetElement{Key: next.AsSlice(), IntervalEnd: true})
	}
	return elems
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// hasMasqRules reports whether a network chain's rules hold the return for
// the network's subnets and the masquerade.
func (o *netObjects) hasMasqRules(rules []*nftables.Rule) (subnetReturn, masq bool) {
	for _, r := range rules {
		var lookup bool
		for _, e := range r.Exprs {
			switch e := e.(type) {
			case *expr.Lookup:
				lookup = e.SetName == o.nets.Name && !e.Invert
			case *expr.Verdict:
				if lookup && e.Kind == expr.VerdictReturn {
					subnetReturn = true
				}
			case *expr.Masq:
				masq = true
			}
		}
	}
	return subnetReturn, masq
}

// jumpRules returns the rules in a postrouting dump that jump to this
// network's chain or look up its srcs set.
func (o *netObjects) jumpRules(rules []*nftables.Rule) []*nftables.Rule {
	var out []*nftables.Rule
	for _, r := range rules {
		for _, e := range r.Exprs {
			if l, ok := e.(*expr.Lookup); ok && l.SetName == o.srcs.Name {
				out = append(out, r)
				break
			}
			if v, ok := e.(*expr.Verdict); ok && v.Chain == o.chain.Name {
				out = append(out, r)
				break
			}
		}
	}
	return out
}

// isJump reports whether r is exactly "lookup srcs, jump chain".
func (o *netObjects) isJump(r *nftables.Rule) bool {
	var lookup, jump bool
	for _, e := range r.Exprs {
		switch e := e.(type) {
		case *expr.Lookup:
			lookup = lookup || (e.SetName == o.srcs.Name && !e.Invert)
		case *expr.Verdict:
			jump = jump || (e.Kind == expr.VerdictJump && e.Chain == o.chain.Name)
		}
	}
	return lookup && jump
}
