package bridge

import (
	"bytes"
	"errors"
	"fmt"
	"net"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/knit-cni/knit/internal/nft"
	"github.com/knit-cni/knit/pkg/cni"
	"golang.org/x/sys/unix"
)

// MAC spoof check (macspoofchk): frames entering the bridge from a
// container's port must carry the container's MAC as source. One rule per
// attachment, in the bridge-family table "knit":
//
//	table bridge knit {
//	    chain macspoof { type filter hook prerouting priority -300; policy accept;
//	        iifname "vethXXXXXXXX" ether saddr != 0a:58:... drop comment "NET/CONTAINERID/IFNAME"
//	    }
//	}
//
// The comment is the owner tag of internal/nft, so DEL, CHECK and GC find
// exactly their own rules.

var (
	spoofTable = &nftables.Table{Name: nft.TableName, Family: nftables.TableFamilyBridge}
	spoofChain = &nftables.Chain{
		Name:     "macspoof",
		Table:    spoofTable,
		Type:     nftables.ChainTypeFilter,
		Hooknum:  nftables.ChainHookPrerouting,
		Priority: nftables.ChainPriorityRef(-300),
	}
)

func ifnameBytes(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

func spoofExprs(hostIf string, mac net.HardwareAddr) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifnameBytes(hostIf)},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: 6, Len: 6},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte(mac)},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}
}

func spoofErr(what string, err error) error {
	return cni.NewError(cni.ErrInternal, what, err.Error())
}

// spoofAdd installs the rule for o's port.
func spoofAdd(o nft.Owner, hostIf string, mac net.HardwareAddr) error {
	if err := o.Validate(); err != nil {
		return err
	}
	c, err := nftables.New()
	if err != nil {
		return spoofErr("cannot open nftables", err)
	}
	c.AddTable(spoofTable)
	policy := nftables.ChainPolicyAccept
	ch := *spoofChain
	ch.Policy = &policy
	c.AddChain(&ch)
	c.AddRule(&nftables.Rule{Table: spoofTable, Chain: spoofChain, Exprs: spoofExprs(hostIf, mac), UserData: nft.OwnerTag(o)})
	if err := c.Flush(); err != nil {
		return spoofErr("cannot install the MAC spoof check (nftables bridge family)", err)
	}
	return nil
}

// spoofRules lists the rules of the macspoof chain; a missing table or
// chain is no rules.
func spoofRules(c *nftables.Conn) ([]*nftables.Rule, error) {
	rules, err := c.GetRules(spoofTable, spoofChain)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, nil
		}
		return nil, err
	}
	return rules, nil
}

// spoofDelete deletes the rules for which drop says so.
func spoofDelete(drop func(nft.Owner) bool) error {
	c, err := nftables.New()
	if err != nil {
		return spoofErr("cannot open nftables", err)
	}
	rules, err := spoofRules(c)
	if err != nil {
		return spoofErr("cannot list the MAC spoof check rules", err)
	}
	n := 0
	for _, r := range rules {
		if o, ok := nft.ParseOwnerTag(r.UserData); ok && drop(o) {
			if err := c.DelRule(r); err != nil {
				return spoofErr("cannot delete a MAC spoof check rule", err)
			}
			n++
		}
	}
	if n == 0 {
		return nil
	}
	if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return spoofErr("cannot delete the MAC spoof check rules", err)
	}
	return nil
}

// spoofDel removes o's rule; none is fine.
func spoofDel(o nft.Owner) error {
	return spoofDelete(func(x nft.Owner) bool { return x == o })
}

// spoofGC removes the rules of network's attachments not in keep.
func spoofGC(network string, keep []nft.Owner) error {
	return spoofDelete(func(x nft.Owner) bool {
		if x.Network != network {
			return false
		}
		for _, k := range keep {
			if k.ContainerID == x.ContainerID && k.IfName == x.IfName {
				return false
			}
		}
		return true
	})
}

// spoofCheck verifies o's rule exists and matches hostIf and mac.
func spoofCheck(o nft.Owner, hostIf string, mac net.HardwareAddr) error {
	c, err := nftables.New()
	if err != nil {
		return spoofErr("cannot open nftables", err)
	}
	rules, err := spoofRules(c)
	if err != nil {
		return spoofErr("cannot list the MAC spoof check rules", err)
	}
	for _, r := range rules {
		if x, ok := nft.ParseOwnerTag(r.UserData); !ok || x != o {
			continue
		}
		if ruleMatches(r, hostIf, mac) {
			return nil
		}
		return cni.NewError(cni.ErrInternal, "MAC spoof check rule does not match the attachment",
			fmt.Sprintf("the rule for %s no longer checks port %s for source MAC %s", o, hostIf, mac))
	}
	return cni.NewError(cni.ErrInternal, "MAC spoof check rule missing",
		fmt.Sprintf("no rule for %s in bridge table %s chain %s: DEL and ADD the attachment again", o, spoofTable.Name, spoofChain.Name))
}

func ruleMatches(r *nftables.Rule, hostIf string, mac net.HardwareAddr) bool {
	ifOK, macOK := false, false
	for _, e := range r.Exprs {
		if cmp, ok := e.(*expr.Cmp); ok {
			ifOK = ifOK || (cmp.Op == expr.CmpOpEq && bytes.Equal(cmp.Data, ifnameBytes(hostIf)))
			macOK = macOK || (cmp.Op == expr.CmpOpNeq && bytes.Equal(cmp.Data, mac))
		}
	}
	return ifOK && macOK
}
