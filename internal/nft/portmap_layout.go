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
//	    ct status dnat ip saddr . ip daddr @pm-snat masquerade }
//	map pm-hostip { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service }
//	map pm-any { type inet_proto . inet_service : ipv4_addr . inet_service }
//	set pm-snat { type ipv4_addr . ipv4_addr; flags interval }
const (
	pmPrerouting  = "pm-prerouting"
	pmOutput      = "pm-output"
	pmDNAT        = "pm-dnat"
	pmPostrouting = "pm-postrouting"
	pmHostIPMap   = "pm-hostip"
	pmAnyMap      = "pm-any"
	pmSNATSet     = "pm-snat"
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
		snat: &nftables.Set{Table: fam.table, Name: pmSNATSet, Interval: true, Concatenation: true,
			KeyType: nftables.MustConcatSetType(fam.keyType, fam.keyType),
			Comment: "knit portmap: source range, container address to masquerade (hairpin, localhost)"},
	}
	o.hostIP.ID, o.any.ID, o.snat.ID = o.setIDs()
	return o
}

func (o *pmObjects) setIDs() (hostIP, any, snat uint32) {
	if o.fam == ipv4 {
		return 11, 12, 13
	}
	return 14, 15, 16
}

func (o *pmObjects) chain(name string) *nftables.Chain {
	return &nftables.Chain{Name: name, Table: o.fam.table}
}

func (o *pmObjects) baseChain(name string, hook *nftables.ChainHook, prio *nftables.ChainPriority) *nftables.Chain {
	policy := nftables.ChainPolicyAccept
	return &nftables.Chain{Name: name, Table: o.fam.table, Type: nftables.ChainTypeNAT,
		Hooknum: hook, Priority: prio, Policy: &policy}
}

// queueCreate adds the family's port mapping structure to the batch. The
// chains are knit's alone, so they are flushed and refilled: the result is
// the same whether or not they existed.
func (o *pmObjects) queueCreate(c *nftables.Conn) error {
	c.AddTable(o.fam.table)
	for _, s := range []*nftables.Set{o.hostIP, o.any, o.snat} {
		if err := c.AddSet(s, nil); err != nil {
			return err
		}
	}
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
	c.AddRule(&nftables.Rule{Table: o.fam.table, Chain: post, Exprs: o.snatRule()})
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

// snatRule: ct status dnat ip saddr . ip daddr @pm-snat masquerade
func (o *pmObjects) snatRule() []expr.Any {
	fam := o.fam
	return []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATUS, Register: reg1},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(ipsDstNAT), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: make([]byte, 4)},
		&expr.Payload{DestRegister: reg32_0, Base: expr.PayloadBaseNetworkHeader, Offset: fam.saddrOff, Len: fam.addrLen},
		&expr.Payload{DestRegister: reg32_0 + fam.addrLen/4, Base: expr.PayloadBaseNetworkHeader, Offset: fam.daddrOff, Len: fam.addrLen},
		&expr.Lookup{SourceRegister: reg32_0, SetName: o.snat.Name, SetID: o.snat.ID},
		&expr.Masq{},
	}
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

// snatElem is the pm-snat element masquerading traffic from src to ctr.
func snatElem(src netip.Prefix, ctr netip.Addr, comment string) nftables.SetElement {
	src = src.Masked()
	return nftables.SetElement{
		Key:     append(src.Addr().AsSlice(), ctr.AsSlice()...),
		KeyEnd:  append(lastAddr(src).AsSlice(), ctr.AsSlice()...),
		Comment: comment,
	}
}

// parseSNATKey returns the container address of a pm-snat element.
func parseSNATKey(k []byte) (netip.Addr, bool) {
	if len(k) != 8 && len(k) != 32 {
		return netip.Addr{}, false
	}
	a, ok := netip.AddrFromSlice(k[len(k)/2:])
	return a, ok
}
