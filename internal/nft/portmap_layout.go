package nft

import (
	"encoding/binary"
	"net/netip"
	"strconv"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Port mapping objects, in each family's knit table (see PortMap):
//
//	chain pm-prerouting { type nat hook prerouting priority dstnat; policy accept;
//	    fib daddr type local jump pm-dnat }
//	chain pm-output { type nat hook output priority dstnat; policy accept;
//	    fib daddr type local jump pm-dnat }
//	chain pm-dnat {
//	    dnat ip to ip daddr . meta l4proto . th dport map @pm-hostip
//	    dnat ip to meta l4proto . th dport map @pm-any }
//	chain pm-postrouting { type nat hook postrouting priority srcnat; policy accept;
//	    # one rule per source prefix length L in use (pm-masq-lens holds the Ls):
//	    ct status dnat ip daddr . ip saddr & <mask of L> . L @pm-masq masquerade }
//	map pm-hostip { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service }
//	map pm-any { type inet_proto . inet_service : ipv4_addr . inet_service }
//	set pm-masq { type ipv4_addr . ipv4_addr . mark }  # container . source network . L
//	set pm-masq-lens { type mark }
//
// The masquerade entries (hairpin from the container's subnet, localhost,
// or any source with masqAll) are exact keys in a hash set, one rule per
// prefix length masking the source before the lookup. An interval set over
// "source range . container" would say the same in one rule, but the kernel
// keeps concatenated ranges in a pipapo set, whose every change rebuilds
// the whole lookup table: 0.9 ms per container at 10 attached, 18 ms at
// 1,000, on ADD and DEL alike. Hash set changes cost the same at any size.
const (
	pmPrerouting  = "pm-prerouting"
	pmOutput      = "pm-output"
	pmDNAT        = "pm-dnat"
	pmPostrouting = "pm-postrouting"
	pmHostIPMap   = "pm-hostip"
	pmAnyMap      = "pm-any"
	pmSNATSet     = "pm-masq"
	pmLensSet     = "pm-masq-lens"
	// pmOldSNATSet is the interval set of earlier versions, removed when
	// the structure is created again.
	pmOldSNATSet = "pm-snat"
)

// Registers: concatenations are laid out in 32-bit registers, NFT_REG32_00
// (8) being the first word of NFT_REG_1 (1).
const (
	reg1    = 1 // NFT_REG_1, 16 bytes
	reg32_0 = 8 // NFT_REG32_00
)

// pmObjects are the port mapping objects of one family.
type pmObjects struct {
	fam    *family
	hostIP *nftables.Set
	any    *nftables.Set
	snat   *nftables.Set
	lens   *nftables.Set
}

func pmObjectsFor(fam *family) *pmObjects {
	svc := nftables.MustConcatSetType(fam.keyType, nftables.TypeInetService)
	o := &pmObjects{
		fam: fam,
		hostIP: &nftables.Set{Table: fam.table, Name: pmHostIPMap, IsMap: true, Concatenation: true,
			KeyType:  nftables.MustConcatSetType(fam.keyType, nftables.TypeInetProto, nftables.TypeInetService),
			DataType: svc, Comment: "knit portmap: host address, protocol, port -> container"},
		any: &nftables.Set{Table: fam.table, Name: pmAnyMap, IsMap: true, Concatenation: true,
			KeyType:  nftables.MustConcatSetType(nftables.TypeInetProto, nftables.TypeInetService),
			DataType: svc, Comment: "knit portmap: protocol, port on any local address -> container"},
		snat: &nftables.Set{Table: fam.table, Name: pmSNATSet, Concatenation: true,
			KeyType: nftables.MustConcatSetType(fam.keyType, fam.keyType, nftables.TypeMark),
			Comment: "knit portmap: container, source network, prefix length to masquerade (hairpin, localhost, masqAll)"},
		lens: &nftables.Set{Table: fam.table, Name: pmLensSet, KeyType: nftables.TypeMark,
			Comment: "knit portmap: source prefix lengths with a masquerade rule in " + pmPostrouting},
	}
	o.hostIP.ID, o.any.ID, o.snat.ID, o.lens.ID = o.setIDs()
	return o
}

func (o *pmObjects) setIDs() (hostIP, any, snat, lens uint32) {
	if o.fam == ipv4 {
		return 11, 12, 13, 17
	}
	return 14, 15, 16, 18
}

func (o *pmObjects) chain(name string) *nftables.Chain {
	return &nftables.Chain{Name: name, Table: o.fam.table}
}

func (o *pmObjects) baseChain(name string, hook *nftables.ChainHook, prio *nftables.ChainPriority) *nftables.Chain {
	policy := nftables.ChainPolicyAccept
	return &nftables.Chain{Name: name, Table: o.fam.table, Type: nftables.ChainTypeNAT,
		Hooknum: hook, Priority: prio, Policy: &policy}
}

// queueCreate adds the family's port mapping structure to the batch, with
// a masquerade rule for each prefix length in lens. The chains are knit's
// alone, so they are flushed and refilled: the result is the same whether
// or not they existed (lens must then hold every length pm-masq uses).
func (o *pmObjects) queueCreate(c *nftables.Conn, lens []int) error {
	c.AddTable(o.fam.table)
	for _, s := range []*nftables.Set{o.hostIP, o.any, o.snat, o.lens} {
		if err := c.AddSet(s, nil); err != nil {
			return err
		}
	}
	c.FlushSet(o.lens)
	dnat := c.AddChain(o.chain(pmDNAT))
	c.FlushChain(dnat)
	for _, exprs := range o.dnatRules() {
		c.AddRule(&nftables.Rule{Table: o.fam.table, Chain: dnat, Exprs: exprs})
	}
	for _, bc := range []*nftables.Chain{
		o.baseChain(pmPrerouting, nftables.ChainHookPrerouting, nftables.ChainPriorityNATDest),
		o.baseChain(pmOutput, nftables.ChainHookOutput, nftables.ChainPriorityNATDest),
	} {
		c.AddChain(bc)
		c.FlushChain(bc)
		c.AddRule(&nftables.Rule{Table: o.fam.table, Chain: bc, Exprs: localJump(pmDNAT)})
	}
	post := c.AddChain(o.baseChain(pmPostrouting, nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource))
	c.FlushChain(post)
	return o.queueLens(c, lens)
}

// queueLens adds the masquerade rule of each prefix length in lens, and
// records the lengths in pm-masq-lens.
func (o *pmObjects) queueLens(c *nftables.Conn, lens []int) error {
	for _, l := range lens {
		c.AddRule(&nftables.Rule{Table: o.fam.table, Chain: o.chain(pmPostrouting), Exprs: o.snatRule(l)})
		if err := c.SetAddElements(o.lens, []nftables.SetElement{{Key: lenBytes(l)}}); err != nil {
			return err
		}
	}
	return nil
}

// queueDelete removes the family's port mapping structure (base chains
// first: they reference the others).
func (o *pmObjects) queueDelete(c *nftables.Conn) {
	for _, n := range []string{pmPrerouting, pmOutput, pmPostrouting, pmDNAT} {
		c.DelChain(o.chain(n))
	}
	c.DelSet(o.hostIP)
	c.DelSet(o.any)
	c.DelSet(o.snat)
	c.DelSet(o.lens)
}

// localJump: fib daddr type local jump <chain>
func localJump(chain string) []expr.Any {
	return []expr.Any{
		&expr.Fib{Register: reg1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
		&expr.Verdict{Kind: expr.VerdictJump, Chain: chain},
	}
}

// portReg returns where the port of a map's "address . port" value lands when looked
// up into NFT_REG_1: the address first, then the port in the next word.
func (o *pmObjects) portReg() uint32 {
	return reg32_0 + o.fam.addrLen/4
}

// dnatRules: the hostIP-specific map first, then the any-address map.
func (o *pmObjects) dnatRules() [][]expr.Any {
	fam := o.fam
	nat := func() *expr.NAT {
		return &expr.NAT{Type: expr.NATTypeDestNAT, Family: uint32(fam.table.Family),
			RegAddrMin: reg1, RegProtoMin: o.portReg(), Specified: true}
	}
	addrWords := fam.addrLen / 4
	return [][]expr.Any{
		{
			&expr.Payload{DestRegister: reg32_0, Base: expr.PayloadBaseNetworkHeader, Offset: fam.daddrOff, Len: fam.addrLen},
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg32_0 + addrWords},
			&expr.Payload{DestRegister: reg32_0 + addrWords + 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Lookup{SourceRegister: reg32_0, SetName: o.hostIP.Name, SetID: o.hostIP.ID, DestRegister: reg1, IsDestRegSet: true},
			nat(),
		},
		{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg32_0},
			&expr.Payload{DestRegister: reg32_0 + 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Lookup{SourceRegister: reg32_0, SetName: o.any.Name, SetID: o.any.ID, DestRegister: reg1, IsDestRegSet: true},
			nat(),
		},
	}
}

// snatRule: ct status dnat ip daddr . ip saddr & <mask of l> . l @pm-masq masquerade
func (o *pmObjects) snatRule(l int) []expr.Any {
	fam := o.fam
	words := fam.addrLen / 4
	maskBytes := make([]byte, fam.addrLen)
	for i := range l {
		maskBytes[i/8] |= 0x80 >> (i % 8)
	}
	return []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATUS, Register: reg1},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(ipsDstNAT), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: make([]byte, 4)},
		&expr.Payload{DestRegister: reg32_0, Base: expr.PayloadBaseNetworkHeader, Offset: fam.daddrOff, Len: fam.addrLen},
		&expr.Payload{DestRegister: reg32_0 + words, Base: expr.PayloadBaseNetworkHeader, Offset: fam.saddrOff, Len: fam.addrLen},
		&expr.Bitwise{SourceRegister: reg32_0 + words, DestRegister: reg32_0 + words, Len: fam.addrLen,
			Mask: maskBytes, Xor: make([]byte, fam.addrLen)},
		&expr.Immediate{Register: reg32_0 + 2*words, Data: lenBytes(l)},
		&expr.Lookup{SourceRegister: reg32_0, SetName: o.snat.Name, SetID: o.snat.ID},
		&expr.Masq{},
	}
}

// lenBytes is a prefix length as it appears in pm-masq keys and
// pm-masq-lens: host byte order, as nft reads the mark type.
func lenBytes(l int) []byte { return binaryutil.NativeEndian.PutUint32(uint32(l)) }

// ruleLen returns the prefix length of a pm-postrouting masquerade rule.
func (o *pmObjects) ruleLen(r *nftables.Rule) (int, bool) {
	for _, e := range r.Exprs {
		// The kernel reports the register in its 128-bit numbering.
		if im, ok := e.(*expr.Immediate); ok && len(im.Data) == 4 {
			return int(binaryutil.NativeEndian.Uint32(im.Data)), true
		}
	}
	return 0, false
}

// ipsDstNAT is IPS_DST_NAT, the conntrack status bit of a DNATed connection.
const ipsDstNAT = 1 << 5

// Protocol numbers of the mappable protocols.
var protoNumbers = map[string]uint8{"tcp": unix.IPPROTO_TCP, "udp": unix.IPPROTO_UDP, "sctp": unix.IPPROTO_SCTP}

func protoName(n uint8) string {
	for k, v := range protoNumbers {
		if v == n {
			return k
		}
	}
	return "proto-" + strconv.Itoa(int(n))
}

// word pads b to a multiple of 4 bytes, as concatenation fields are.
func word(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func portBytes(p uint16) []byte {
	return word(binary.BigEndian.AppendUint16(nil, p))
}

// dnatKey is a mapping's key in pm-hostip (valid hostIP) or pm-any.
func dnatKey(hostIP netip.Addr, proto uint8, port uint16) []byte {
	var k []byte
	if hostIP.IsValid() {
		k = hostIP.AsSlice()
	}
	k = append(k, word([]byte{proto})...)
	return append(k, portBytes(port)...)
}

// parseDNATKey reverses dnatKey for a key of a family with addrLen bytes
// (0 for pm-any).
func parseDNATKey(k []byte, addrLen int) (hostIP netip.Addr, proto uint8, port uint16, ok bool) {
	if len(k) != addrLen+8 {
		return netip.Addr{}, 0, 0, false
	}
	if addrLen > 0 {
		hostIP, _ = netip.AddrFromSlice(k[:addrLen])
	}
	return hostIP, k[addrLen], binary.BigEndian.Uint16(k[addrLen+4:]), true
}

// dnatValue is the "container address . container port" a key maps to.
func dnatValue(ctr netip.Addr, port uint16) []byte {
	return append(ctr.AsSlice(), portBytes(port)...)
}

func parseDNATValue(v []byte) (netip.AddrPort, bool) {
	if len(v) != 8 && len(v) != 20 {
		return netip.AddrPort{}, false
	}
	n := len(v) - 4
	a, _ := netip.AddrFromSlice(v[:n])
	return netip.AddrPortFrom(a, binary.BigEndian.Uint16(v[n:])), true
}

// snatElem is the pm-masq element masquerading traffic from src to ctr.
func snatElem(src netip.Prefix, ctr netip.Addr, comment string) nftables.SetElement {
	return nftables.SetElement{Key: snatKey(src, ctr), Comment: comment}
}

// snatKey is pm-masq's key for traffic from src to ctr.
func snatKey(src netip.Prefix, ctr netip.Addr) []byte {
	k := append(ctr.AsSlice(), src.Masked().Addr().AsSlice()...)
	return append(k, lenBytes(src.Bits())...)
}

// parseSNATKey reverses snatKey.
func parseSNATKey(k []byte) (src netip.Prefix, ctr netip.Addr, ok bool) {
	n := (len(k) - 4) / 2
	if n != 4 && n != 16 {
		return netip.Prefix{}, netip.Addr{}, false
	}
	ctr, _ = netip.AddrFromSlice(k[:n])
	a, _ := netip.AddrFromSlice(k[n : 2*n])
	src, err := a.Prefix(int(binaryutil.NativeEndian.Uint32(k[2*n:])))
	return src, ctr, err == nil
}
