package nft

import (
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/knit-cni/knit/pkg/cni"
	"golang.org/x/sys/unix"
)

// Firewall objects, in each family's knit table:
//
//	chain fw-forward { type filter hook forward priority filter; policy accept;
//	    iifname @fw-isobr oifname @fw-isobr iifname . oifname != @fw-samebr drop
//	    ip daddr @fw-ctrs ct state established,related accept
//	    ip saddr @fw-ctrs accept }
//	set fw-ctrs { type ipv4_addr; elements = { 10.88.0.5 comment "NAME/CONTAINERID/IFNAME" } }
//	set fw-isobr { type ifname; elements = { "br0" comment "knit network NAME" } }
//	set fw-samebr { type ifname . ifname; elements = { "br0" . "br0" comment "knit network NAME" } }
//
// The chain's policy stays accept, so the host's other forwarded traffic is
// untouched. An accept ends processing only in knit's table: nftables runs
// every base chain on the hook, so a drop in another table (Docker's
// iptables-nft FORWARD policy drop, firewalld, an admin's own table) still
// drops container traffic, and knit cannot override it; allow it there (e.g.
// in DOCKER-USER). knit's isolation drop, in turn, holds whatever other
// tables accept. Unlike the reference's iptables chains, nothing is inserted
// into chains knit does not own.
const (
	fwForward = "fw-forward"
	fwCtrs    = "fw-ctrs"
	fwIsoBr   = "fw-isobr"
	fwSameBr  = "fw-samebr"
)

type fwObjects struct {
	fam                 *family
	chain               *nftables.Chain
	ctrs, isobr, samebr *nftables.Set
}

func fwObjectsFor(fam *family) *fwObjects {
	id := uint32(21)
	if fam == ipv6 {
		id = 24
	}
	policy := nftables.ChainPolicyAccept
	return &fwObjects{
		fam: fam,
		chain: &nftables.Chain{Name: fwForward, Table: fam.table, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &policy},
		ctrs: &nftables.Set{Table: fam.table, Name: fwCtrs, KeyType: fam.keyType, ID: id,
			Comment: "knit firewall: container addresses allowed through the forward path"},
		isobr: &nftables.Set{Table: fam.table, Name: fwIsoBr, KeyType: nftables.TypeIFName, ID: id + 1,
			Comment: "knit firewall: bridges isolated from each other (ingressPolicy same-bridge)"},
		samebr: &nftables.Set{Table: fam.table, Name: fwSameBr, Concatenation: true, ID: id + 2,
			KeyType: nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeIFName),
			Comment: "knit firewall: traffic within one isolated bridge"},
	}
}

func (o *fwObjects) queueCreate(c *nftables.Conn) error {
	c.AddTable(o.fam.table)
	for _, s := range []*nftables.Set{o.ctrs, o.isobr, o.samebr} {
		if err := c.AddSet(s, nil); err != nil {
			return err
		}
	}
	ch := c.AddChain(o.chain)
	c.FlushChain(ch)
	for _, exprs := range o.rules() {
		c.AddRule(&nftables.Rule{Table: o.fam.table, Chain: ch, Exprs: exprs})
	}
	return nil
}

func (o *fwObjects) queueDelete(c *nftables.Conn) {
	c.DelChain(o.chain)
	c.DelSet(o.ctrs)
	c.DelSet(o.isobr)
	c.DelSet(o.samebr)
}

func (o *fwObjects) rules() [][]expr.Any {
	fam := o.fam
	const reg2 = 2 // NFT_REG_2, right after NFT_REG_1's 16 bytes
	return [][]expr.Any{
		{
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: reg1},
			&expr.Lookup{SourceRegister: reg1, SetName: o.isobr.Name, SetID: o.isobr.ID},
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: reg1},
			&expr.Lookup{SourceRegister: reg1, SetName: o.isobr.Name, SetID: o.isobr.ID},
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: reg1},
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: reg2},
			&expr.Lookup{SourceRegister: reg1, SetName: o.samebr.Name, SetID: o.samebr.ID, Invert: true},
			&expr.Verdict{Kind: expr.VerdictDrop},
		},
		{
			&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: fam.daddrOff, Len: fam.addrLen},
			&expr.Lookup{SourceRegister: reg1, SetName: o.ctrs.Name, SetID: o.ctrs.ID},
			&expr.Ct{Key: expr.CtKeySTATE, Register: reg1},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED), Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: make([]byte, 4)},
			&expr.Verdict{Kind: expr.VerdictAccept},
		},
		{
			&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: fam.saddrOff, Len: fam.addrLen},
			&expr.Lookup{SourceRegister: reg1, SetName: o.ctrs.Name, SetID: o.ctrs.ID},
			&expr.Verdict{Kind: expr.VerdictAccept},
		},
	}
}

// ifnameKey is an interface name as meta iifname loads it: IFNAMSIZ bytes,
// zero padded.
func ifnameKey(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

func bridgeElems(bridge, network string) (iso, same nftables.SetElement) {
	tag := networkPrefix + network
	return nftables.SetElement{Key: ifnameKey(bridge), Comment: tag},
		nftables.SetElement{Key: append(ifnameKey(bridge), ifnameKey(bridge)...), Comment: tag}
}

// Firewall lets container traffic through the host's forward path and
// isolates bridges from each other (the firewall plugin's nftables backend).
// Each container address is one owner-tagged element of fw-ctrs, added in
// one batch and deleted after a lookup by key; an isolated bridge is one
// element of fw-isobr and fw-samebr tagged with its network, kept until GC
// finds no attachment of that network (as the reference keeps its isolation
// chains).
type Firewall struct{ base *Masq }

// NewFirewall returns a Firewall for the current network namespace unless
// an option says otherwise. The options are Masq's.
func NewFirewall(opts ...Option) *Firewall { return &Firewall{base: NewMasq(opts...)} }

// Close releases the netlink sockets (see Masq.Close).
func (f *Firewall) Close() error { return f.base.Close() }

func validBridge(bridge string) error {
	if bridge == "" {
		return nil
	}
	if err := cni.ValidateInterfaceName(bridge); err != nil {
		return cni.NewError(cni.ErrInvalidNetworkConfig, "invalid bridge name for isolation", err.Error())
	}
	return nil
}

// Add allows the container addresses through the forward path, owned by o,
// and when isolate names a bridge, isolates that bridge from the other
// isolated bridges. An address still recorded for another owner is taken
// over, as Masq does.
func (f *Firewall) Add(o Owner, addrs []net.IPNet, isolate string) (err error) {
	if err := o.Validate(); err != nil {
		return err
	}
	if err := validBridge(isolate); err != nil {
		return err
	}
	targets, err := parseAddrs(addrs)
	if err != nil {
		return err
	}
	if len(targets) == 0 && isolate == "" {
		return nil
	}
	c, _, end, err := f.base.begin(true, false)
	if err != nil {
		return err
	}
	defer end(&err)
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			for _, fam := range families {
				if err := fwObjectsFor(fam).queueCreate(c); err != nil {
					return kernelErr("preparing the firewall batch", err)
				}
			}
		}
		for _, t := range targets {
			set := fwObjectsFor(t.fam()).ctrs
			add := []nftables.SetElement{{Key: t.addr.AsSlice(), Comment: o.String()}}
			if err := c.SetAddElements(set, add); err != nil {
				return kernelErr("preparing the firewall batch", err)
			}
			if err := c.SetDeleteElements(set, []nftables.SetElement{{Key: t.addr.AsSlice()}}); err != nil {
				return kernelErr("preparing the firewall batch", err)
			}
			if err := c.SetAddElements(set, add); err != nil {
				return kernelErr("preparing the firewall batch", err)
			}
		}
		if isolate != "" {
			for _, fam := range families {
				objs := fwObjectsFor(fam)
				iso, same := bridgeElems(isolate, o.Network)
				if err := c.SetAddElements(objs.isobr, []nftables.SetElement{iso}); err != nil {
					return kernelErr("preparing the firewall batch", err)
				}
				if err := c.SetAddElements(objs.samebr, []nftables.SetElement{same}); err != nil {
					return kernelErr("preparing the firewall batch", err)
				}
			}
		}
		err := c.Flush()
		if err == nil {
			return nil
		}
		if attempt == 1 || !notFound(err) {
			return kernelErr("adding firewall entries for "+o.String(), err)
		}
		f.base.log.Debug("creating firewall objects")
	}
}

// Del removes o's container addresses (found by owner comment when addrs
// is empty). Entries of other owners are left alone.
func (f *Firewall) Del(o Owner, addrs []net.IPNet) (err error) {
	if err := o.Validate(); err != nil {
		return err
	}
	targets, err := parseAddrs(addrs)
	if err != nil {
		return err
	}
	c, r, end, err := f.base.begin(true, true)
	if err != nil {
		return err
	}
	defer end(&err)
	type del struct {
		set *nftables.Set
		key []byte
	}
	var dels []del
	if len(targets) > 0 {
		for _, t := range targets {
			set := fwObjectsFor(t.fam()).ctrs
			owner, found, err := r.get(set, t.addr.AsSlice())
			if err != nil {
				return kernelErr("looking up the firewall entry of "+t.addr.String(), err)
			}
			if found && owner == o.String() {
				dels = append(dels, del{set, t.addr.AsSlice()})
			}
		}
	} else {
		for _, fam := range families {
			set := fwObjectsFor(fam).ctrs
			elems, err := dumpElements(c, set)
			if notFound(err) {
				continue
			}
			if err != nil {
				return kernelErr("listing the firewall set", err)
			}
			for _, e := range elems {
				if e.Comment == o.String() {
					dels = append(dels, del{set, e.Key})
				}
			}
		}
	}
	if len(dels) == 0 {
		return nil
	}
	for _, d := range dels {
		if err := c.SetDeleteElements(d.set, []nftables.SetElement{{Key: d.key}}); err != nil {
			return kernelErr("preparing the firewall batch", err)
		}
	}
	if err := c.Flush(); err != nil && !notFound(err) {
		return kernelErr("deleting firewall entries of "+o.String(), err)
	}
	return nil
}

// Check verifies o's addresses are allowed, the forward chain holds its
// rules and, when isolate names a bridge, that the bridge is isolated.
func (f *Firewall) Check(o Owner, addrs []net.IPNet, isolate string) (err error) {
	if err := o.Validate(); err != nil {
		return err
	}
	if err := validBridge(isolate); err != nil {
		return err
	}
	targets, err := parseAddrs(addrs)
	if err != nil {
		return err
	}
	c, r, end, err := f.base.begin(false, true)
	if err != nil {
		return err
	}
	defer end(&err)
	var problems []string
	for _, fam := range families {
		// GC removes a family's structure when it holds no entry, so only
		// the families this attachment uses must have it.
		if isolate == "" && !slices.ContainsFunc(targets, func(t target) bool { return t.fam() == fam }) {
			continue
		}
		objs := fwObjectsFor(fam)
		rules, err := dumpRules(c, fam.table, objs.chain)
		switch {
		case notFound(err):
			problems = append(problems, fmt.Sprintf("chain %s not found in table %s %s", fwForward, fam.name, TableName))
			continue
		case err != nil:
			return kernelErr("listing the firewall rules", err)
		case len(rules) != 3:
			problems = append(problems, fmt.Sprintf("chain %s %s %s has %d rules, want 3", fam.name, TableName, fwForward, len(rules)))
		}
		if isolate != "" {
			iso, same := bridgeElems(isolate, o.Network)
			for _, x := range []struct {
				set *nftables.Set
				key []byte
			}{{objs.isobr, iso.Key}, {objs.samebr, same.Key}} {
				if _, found, err := r.get(x.set, x.key); err != nil {
					return kernelErr("looking up the bridge isolation of "+isolate, err)
				} else if !found {
					problems = append(problems, fmt.Sprintf("bridge %s missing from %s %s set %s", isolate, fam.name, TableName, x.set.Name))
				}
			}
		}
	}
	for _, t := range targets {
		set := fwObjectsFor(t.fam()).ctrs
		owner, found, err := r.get(set, t.addr.AsSlice())
		switch {
		case err != nil:
			return kernelErr("looking up the firewall entry of "+t.addr.String(), err)
		case !found:
			problems = append(problems, fmt.Sprintf("%s missing from %s %s set %s", t.addr, t.fam().name, TableName, fwCtrs))
		case owner != o.String():
			problems = append(problems, fmt.Sprintf("%s in %s %s set %s belongs to %q", t.addr, t.fam().name, TableName, fwCtrs, owner))
		}
	}
	if len(problems) > 0 {
		return cni.NewError(cni.ErrInternal, "firewall check failed for "+o.String()+": "+problems[0], strings.Join(problems[1:], "; "))
	}
	return nil
}

// GC removes the entries of network's attachments not in keep (by
// container ID and interface name); once the network has none left, its
// bridge isolation entries go, and a family left with no entries at all
// loses the firewall chain and sets.
func (f *Firewall) GC(network string, keep []Owner) (err error) {
	if err := cni.ValidateNetworkName(network); err != nil {
		return err
	}
	c, _, end, err := f.base.begin(true, false)
	if err != nil {
		return err
	}
	defer end(&err)
	kept := func(o Owner) bool {
		return slices.ContainsFunc(keep, func(k Owner) bool { return k.ContainerID == o.ContainerID && k.IfName == o.IfName })
	}
	type famState struct {
		exists    bool
		left      int // elements of any network left in fw-ctrs
		isoElems  []nftables.SetElement
		sameElems []nftables.SetElement
		dropCtrs  []nftables.SetElement
	}
	states := map[*family]*famState{}
	networkLeft := false
	for _, fam := range families {
		objs := fwObjectsFor(fam)
		st := &famState{}
		states[fam] = st
		elems, err := dumpElements(c, objs.ctrs)
		if notFound(err) {
			continue
		}
		if err != nil {
			return kernelErr("listing the firewall set", err)
		}
		st.exists = true
		for _, e := range elems {
			o, perr := ParseOwner(e.Comment)
			if perr == nil && o.Network == network && !kept(o) {
				f.base.log.Debug("gc: removing firewall entry", "owner", e.Comment)
				st.dropCtrs = append(st.dropCtrs, nftables.SetElement{Key: e.Key})
				continue
			}
			st.left++
			if perr == nil && o.Network == network {
				networkLeft = true
			}
		}
		if st.isoElems, err = dumpElements(c, objs.isobr); err != nil && !notFound(err) {
			return kernelErr("listing the bridge isolation set", err)
		}
		if st.sameElems, err = dumpElements(c, objs.samebr); err != nil && !notFound(err) {
			return kernelErr("listing the bridge isolation set", err)
		}
	}
	for _, fam := range families {
		st, objs := states[fam], fwObjectsFor(fam)
		if !st.exists {
			continue
		}
		for chunk := range slices.Chunk(st.dropCtrs, 512) {
			if err := c.SetDeleteElements(objs.ctrs, chunk); err != nil {
				return kernelErr("preparing the firewall batch", err)
			}
			if err := c.Flush(); err != nil {
				return kernelErr("removing firewall entries of network "+network, err)
			}
		}
		bridgesLeft := 0
		if !networkLeft {
			for _, x := range []struct {
				set   *nftables.Set
				elems []nftables.SetElement
			}{{objs.isobr, st.isoElems}, {objs.samebr, st.sameElems}} {
				var drop []nftables.SetElement
				for _, e := range x.elems {
					if e.Comment == networkPrefix+network {
						drop = append(drop, nftables.SetElement{Key: e.Key})
					} else if x.set == objs.isobr {
						bridgesLeft++
					}
				}
				if len(drop) > 0 {
					if err := c.SetDeleteElements(x.set, drop); err != nil {
						return kernelErr("preparing the firewall batch", err)
					}
				}
			}
		} else {
			bridgesLeft = len(st.isoElems)
		}
		if st.left == 0 && bridgesLeft == 0 {
			f.base.log.Debug("gc: removing firewall objects", "family", fam.name)
			objs.queueDelete(c)
		}
		if err := c.Flush(); err != nil && !notFound(err) {
			return kernelErr("removing the firewall entries of network "+network, err)
		}
	}
	return nil
}
