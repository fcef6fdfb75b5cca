package nft

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/knit-cni/knit/pkg/cni"
)

// PortMapping publishes one container port on the host.
type PortMapping struct {
	HostPort      uint16
	ContainerPort uint16
	Protocol      string     // "tcp", "udp" or "sctp"
	HostIP        netip.Addr // the zero Addr or an unspecified one: every local address of the container's families
}

func (pm PortMapping) String() string {
	h := "*"
	if pm.anyHost() {
		if pm.HostIP.IsValid() {
			h = pm.HostIP.String()
		}
	} else {
		h = pm.HostIP.String()
	}
	return fmt.Sprintf("%s:%d/%s->%d", h, pm.HostPort, pm.Protocol, pm.ContainerPort)
}

func (pm PortMapping) anyHost() bool { return !pm.HostIP.IsValid() || pm.HostIP.IsUnspecified() }

// PortMapOptions says which mapped connections are masqueraded on their way
// to the container (the reference's snat and masqAll keys).
type PortMapOptions struct {
	// SNAT masquerades connections from the container's own subnet
	// (hairpin) and, in IPv4, from 127.0.0.0/8 (localhost access).
	SNAT bool
	// MasqAll masquerades every mapped connection, whatever its source.
	MasqAll bool
}

// PortEntry is one port mapping in the kernel and its owner.
type PortEntry struct {
	Owner     Owner
	Mapping   PortMapping // HostIP is invalid for mappings on every local address
	Container netip.AddrPort
}

// PortMap manages published ports: DNAT of connections to the host's own
// addresses (fib daddr type local) through maps keyed by
// [host address .] protocol . port, and masquerade of hairpin and localhost
// connections through an interval set keyed by source range . container
// address. Every element carries its owner's comment. A container's ADD is
// one batch plus one element lookup per mapping; DEL looks its elements up by
// key; neither dumps a map, so the cost does not grow with the number of
// published ports. The structure (chains, maps) is created by the first
// ADD in a namespace and removed by GC once nothing is mapped.
type PortMap struct{ base *Masq }

// NewPortMap returns a PortMap for the current network namespace unless an
// option says otherwise. The options are Masq's.
func NewPortMap(opts ...Option) *PortMap { return &PortMap{base: NewMasq(opts...)} }

// Close releases the netlink sockets (see Masq.Close).
func (p *PortMap) Close() error { return p.base.Close() }

// pmElem is one planned element: a DNAT map entry or a masquerade entry.
type pmElem struct {
	fam  *family
	set  *nftables.Set
	elem nftables.SetElement
	pm   *PortMapping // for DNAT entries
}

// ctrAddrs picks the first container address of each family.
func ctrAddrs(addrs []net.IPNet) (map[*family]target, error) {
	ts, err := parseAddrs(addrs)
	if err != nil {
		return nil, err
	}
	out := map[*family]target{}
	for _, t := range ts {
		if _, ok := out[t.fam()]; !ok {
			out[t.fam()] = t
		}
	}
	return out, nil
}

// ValidateMappings checks mappings for what the kernel cannot express or
// that conflicts within the list, with a code-7 error naming the mapping.
func ValidateMappings(maps []PortMapping) error {
	seen := map[string]bool{}
	for _, pm := range maps {
		bad := func(why string) error {
			return cni.NewError(cni.ErrInvalidNetworkConfig, "invalid port mapping "+pm.String(), why)
		}
		if _, ok := protoNumbers[pm.Protocol]; !ok {
			return bad(fmt.Sprintf("protocol %q is not supported: use tcp, udp or sctp", pm.Protocol))
		}
		if pm.HostPort == 0 || pm.ContainerPort == 0 {
			return bad("hostPort and containerPort must be 1-65535")
		}
		if !pm.anyHost() && (pm.HostIP.IsMulticast() || pm.HostIP.Zone() != "") {
			return bad("hostIP must be a unicast address without zone")
		}
		k := fmt.Sprintf("%s/%d/%s", hostKeyText(pm), pm.HostPort, pm.Protocol)
		if seen[k] {
			return bad("the same host address, port and protocol is mapped twice")
		}
		seen[k] = true
	}
	return nil
}

func hostKeyText(pm PortMapping) string {
	if pm.anyHost() {
		if pm.HostIP.IsValid() && pm.HostIP.Is4() {
			return "0.0.0.0"
		}
		if pm.HostIP.IsValid() {
			return "::"
		}
		return "*"
	}
	return pm.HostIP.Unmap().String()
}

// plan returns the DNAT and masquerade elements for o's mappings to ctrs.
func (p *PortMap) plan(o Owner, ctrs map[*family]target, maps []PortMapping, opt PortMapOptions) ([]pmElem, error) {
	var out []pmElem
	used := map[*family]bool{}
	for i := range maps {
		pm := &maps[i]
		var fams []*family
		switch {
		case !pm.HostIP.IsValid():
			fams = families
		case pm.HostIP.IsUnspecified():
			fams = []*family{familyOf(pm.HostIP.Unmap())}
		default:
			f := familyOf(pm.HostIP.Unmap())
			if _, ok := ctrs[f]; !ok {
				return nil, cni.NewError(cni.ErrInvalidNetworkConfig, "invalid port mapping "+pm.String(),
					fmt.Sprintf("hostIP %s is %s but the container has no %s address", pm.HostIP, f.name, f.name))
			}
			fams = []*family{f}
		}
		for _, f := range fams {
			t, ok := ctrs[f]
			if !ok {
				continue
			}
			used[f] = true
			objs := pmObjectsFor(f)
			set, host := objs.any, netip.Addr{}
			if !pm.anyHost() {
				set, host = objs.hostIP, pm.HostIP.Unmap()
			}
			out = append(out, pmElem{fam: f, set: set, pm: pm, elem: nftables.SetElement{
				Key: dnatKey(host, protoNumbers[pm.Protocol], pm.HostPort), Val: dnatValue(t.addr, pm.ContainerPort), Comment: o.String(),
			}})
		}
	}
	for _, f := range families {
		t, ok := ctrs[f]
		if !used[f] || !ok {
			continue
		}
		snat := pmObjectsFor(f).snat
		for _, s := range snatSources(f, t, opt) {
			out = append(out, pmElem{fam: f, set: snat, elem: snatElem(s, t.addr, o.String())})
		}
	}
	return out, nil
}

// queueRecreate queues the family's port mapping structure, with a
// masquerade rule for every prefix length pm-masq already holds plus need,
// and the removal of an earlier version's interval set.
func (p *PortMap) queueRecreate(c *nftables.Conn, f *family, need []int) error {
	objs := pmObjectsFor(f)
	lens := slices.Clone(need)
	elems, err := dumpElements(c, objs.snat)
	if err != nil && !notFound(err) {
		return kernelErr("listing the port mapping masquerade set", err)
	}
	for _, e := range elems {
		if src, _, ok := parseSNATKey(e.Key); ok && !slices.Contains(lens, src.Bits()) {
			lens = append(lens, src.Bits())
		}
	}
	// An earlier version's interval set: its entries move to pm-masq.
	var moved []nftables.SetElement
	old, err := c.GetSetByName(f.table, pmOldSNATSet)
	if err == nil {
		olds, err := dumpElements(c, old)
		if err != nil && !notFound(err) {
			return kernelErr("listing the earlier port mapping masquerade set", err)
		}
		for _, e := range olds {
			if src, ctr, ok := oldSNATElem(e); ok {
				moved = append(moved, snatElem(src, ctr, e.Comment))
				if !slices.Contains(lens, src.Bits()) {
					lens = append(lens, src.Bits())
				}
			}
		}
	}
	if err := objs.queueCreate(c, lens); err != nil {
		return kernelErr("preparing the port mapping batch", err)
	}
	if old != nil {
		c.DelSet(old)
		for chunk := range slices.Chunk(moved, 256) {
			if err := c.SetAddElements(objs.snat, chunk); err != nil {
				return kernelErr("preparing the port mapping batch", err)
			}
		}
	}
	return nil
}

// oldSNATElem reads an element of the earlier interval set ("source range
// . container", the range a prefix).
func oldSNATElem(e nftables.SetElement) (src netip.Prefix, ctr netip.Addr, ok bool) {
	n := len(e.Key) / 2
	if (n != 4 && n != 16) || len(e.KeyEnd) != len(e.Key) {
		return src, ctr, false
	}
	from, _ := netip.AddrFromSlice(e.Key[:n])
	to, _ := netip.AddrFromSlice(e.KeyEnd[:n])
	ctr, _ = netip.AddrFromSlice(e.Key[n:])
	for bits := 0; bits <= n*8; bits++ {
		if p := netip.PrefixFrom(from, bits); p.Masked().Addr() == from && lastAddr(p) == to {
			return p, ctr, true
		}
	}
	return src, ctr, false
}

// snatSources are the sources whose traffic to t's mapped ports is
// masqueraded: any with masqAll; otherwise, with snat, t's subnet (hairpin)
// and, in IPv4, localhost (route_localnet).
func snatSources(f *family, t target, opt PortMapOptions) []netip.Prefix {
	switch {
	case opt.MasqAll:
		return []netip.Prefix{netip.PrefixFrom(f.mcast.Addr(), 0).Masked()}
	case opt.SNAT:
		var srcs []netip.Prefix
		if t.subnet.IsValid() {
			srcs = append(srcs, t.subnet.Masked())
		}
		if f == ipv4 {
			srcs = append(srcs, netip.MustParsePrefix("127.0.0.0/8"))
		}
		return srcs
	}
	return nil
}

// Add publishes the mappings on the container's first address of each
// family (addresses with prefix; the prefix is the hairpin subnet) and
// flushes UDP conntrack entries of the mapped host ports, so a client
// keeps no stale flow toward a former container. A host port mapped by
// another attachment is an error that changes nothing; o's own earlier
// mappings of the same port are replaced.
func (p *PortMap) Add(o Owner, addrs []net.IPNet, maps []PortMapping, opt PortMapOptions) (err error) {
	if err := o.Validate(); err != nil {
		return err
	}
	if err := ValidateMappings(maps); err != nil || len(maps) == 0 {
		return err
	}
	ctrs, err := ctrAddrs(addrs)
	if err != nil {
		return err
	}
	if len(ctrs) == 0 {
		return cni.NewError(cni.ErrInvalidNetworkConfig, "no container address to map ports to",
			"portmap needs the container's IP addresses in prevResult")
	}
	elems, err := p.plan(o, ctrs, maps, opt)
	if err != nil {
		return err
	}
	c, r, end, err := p.base.begin(true, true)
	if err != nil {
		return err
	}
	defer end(&err)
	// One round trip looks up every DNAT key (a host port mapped by
	// another attachment is an error) and, for each prefix length this
	// ADD's masquerade entries use, whether pm-masq-lens lists it (its
	// masquerade rule exists).
	type lenKey struct {
		fam  *family
		bits int
	}
	var qs []elemQuery
	var dnats []pmElem
	var lens []lenKey
	for _, e := range elems {
		if e.pm != nil {
			qs = append(qs, elemQuery{e.set, e.elem.Key})
			dnats = append(dnats, e)
		}
	}
	for _, e := range elems {
		if e.pm != nil {
			continue
		}
		src, _, _ := parseSNATKey(e.elem.Key)
		k := lenKey{e.fam, src.Bits()}
		if !slices.Contains(lens, k) {
			lens = append(lens, k)
			qs = append(qs, elemQuery{pmObjectsFor(e.fam).lens, lenBytes(k.bits)})
		}
	}
	answers, err := r.lookupAll(qs)
	if err != nil {
		return kernelErr("looking up port mappings and masquerade rules", err)
	}
	for i, e := range dnats {
		if a := answers[i]; a.found && a.elem.comment != o.String() {
			return cni.NewError(cni.ErrInternal, fmt.Sprintf("host port %s (%s) is already mapped", e.pm.String(), e.fam.name),
				fmt.Sprintf("it belongs to %q: remove that attachment (DEL, or knit gc if it is gone) or choose another hostPort", a.elem.comment))
		}
	}
	missing := map[*family][]int{}
	for i, k := range lens {
		if !answers[len(dnats)+i].found {
			missing[k.fam] = append(missing[k.fam], k.bits)
		}
	}
	create := map[*family]bool{}
	for attempt := 0; ; attempt++ {
		for f, lens := range missing {
			if create[f] {
				continue
			}
			if err := pmObjectsFor(f).queueLens(c, lens); err != nil {
				return kernelErr("preparing the port mapping batch", err)
			}
		}
		for f := range create {
			if err := p.queueRecreate(c, f, missing[f]); err != nil {
				return err
			}
		}
		for _, e := range elems {
			del := e.elem
			del.Val, del.Comment = nil, ""
			if err := errors.Join(c.SetAddElements(e.set, []nftables.SetElement{e.elem}),
				c.SetDeleteElements(e.set, []nftables.SetElement{del}),
				c.SetAddElements(e.set, []nftables.SetElement{e.elem})); err != nil {
				return kernelErr("preparing the port mapping batch", err)
			}
		}
		err := c.Flush()
		if err == nil {
			break
		}
		if attempt == 1 || !notFound(err) {
			return kernelErr(fmt.Sprintf("adding port mappings for %s", o), err)
		}
		for _, e := range elems {
			for _, name := range []string{e.set.Name, pmLensSet} {
				if _, err := c.GetSetByName(e.fam.table, name); err != nil {
					p.base.log.Debug("creating port mapping objects", "family", e.fam.name)
					create[e.fam] = true
				}
			}
		}
	}
	return p.flushConntrack(maps)
}

// Del removes o's mappings. With mappings given, each is looked up by key
// and deleted if o owns it; without, or when any given mapping is missing or
// someone else's (the runtime passed other mappings than at ADD, and the
// reference would still remove all of the container's), o's entries are
// found by their owner comments (one dump of the maps). A DEL naming only
// some of the ADD's mappings removes those; GC reclaims the rest. The same holds for the masquerade entries
// and addrs. Entries owned by someone else are left alone. UDP conntrack
// entries of the removed host ports are flushed.
func (p *PortMap) Del(o Owner, addrs []net.IPNet, maps []PortMapping) (err error) {
	if err := o.Validate(); err != nil {
		return err
	}
	if err := ValidateMappings(maps); err != nil {
		return err
	}
	ctrs, err := ctrAddrs(addrs)
	if err != nil {
		return err
	}
	c, r, end, err := p.base.begin(true, true)
	if err != nil {
		return err
	}
	defer end(&err)

	type del struct {
		set  *nftables.Set
		elem nftables.SetElement
	}
	var dels []del
	var removed []PortMapping
	complete := len(maps) > 0 // every named mapping found and o's
	if len(maps) > 0 {
		for _, pm := range maps {
			for _, f := range families {
				if !pm.anyHost() && familyOf(pm.HostIP.Unmap()) != f {
					continue
				}
				if _, ok := ctrs[f]; len(ctrs) > 0 && !ok {
					continue // the container has no address in f: nothing mapped there
				}
				objs := pmObjectsFor(f)
				set, host := objs.any, netip.Addr{}
				if !pm.anyHost() {
					set, host = objs.hostIP, pm.HostIP.Unmap()
				}
				key := dnatKey(host, protoNumbers[pm.Protocol], pm.HostPort)
				owner, found, err := r.get(set, key)
				if err != nil {
					return kernelErr("looking up port mapping "+pm.String(), err)
				}
				if found && owner == o.String() {
					dels = append(dels, del{set, nftables.SetElement{Key: key}})
					removed = append(removed, pm)
				} else {
					complete = false
				}
			}
		}
	}
	if !complete {
		// No mappings named, or some not o's: this DEL's runtimeConfig is
		// not the ADD's, so find o's entries by their owner comments.
		dels, removed = dels[:0], removed[:0]
		entries, err := p.list(c)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if e.Owner == o {
				f := familyOf(e.Container.Addr())
				objs := pmObjectsFor(f)
				set := objs.any
				if e.Mapping.HostIP.IsValid() {
					set = objs.hostIP
				}
				dels = append(dels, del{set, nftables.SetElement{Key: dnatKey(e.Mapping.HostIP, protoNumbers[e.Mapping.Protocol], e.Mapping.HostPort)}})
				removed = append(removed, e.Mapping)
			}
		}
	}
	if len(ctrs) > 0 {
		for f, t := range ctrs {
			snat := pmObjectsFor(f).snat
			// Whichever options the ADD had: every key it could have made.
			srcs := append(snatSources(f, t, PortMapOptions{MasqAll: true}), snatSources(f, t, PortMapOptions{SNAT: true})...)
			for _, src := range srcs {
				key := snatKey(src, t.addr)
				owner, found, err := r.get(snat, key)
				if err != nil {
					return kernelErr("looking up the port mapping masquerade of "+t.addr.String(), err)
				}
				if found && owner == o.String() {
					dels = append(dels, del{snat, nftables.SetElement{Key: key}})
				}
			}
		}
	} else {
		for _, f := range families {
			snat := pmObjectsFor(f).snat
			elems, err := dumpElements(c, snat)
			if notFound(err) {
				continue
			}
			if err != nil {
				return kernelErr("listing the port mapping masquerade set", err)
			}
			for _, e := range elems {
				if e.Comment == o.String() {
					dels = append(dels, del{snat, nftables.SetElement{Key: e.Key}})
				}
			}
		}
	}
	if len(dels) == 0 {
		return nil
	}
	queue := func(d del) error { return c.SetDeleteElements(d.set, []nftables.SetElement{d.elem}) }
	for _, d := range dels {
		if err := queue(d); err != nil {
			return kernelErr("preparing the port mapping batch", err)
		}
	}
	err = c.Flush()
	if notFound(err) && len(dels) > 1 {
		// Removed meanwhile by something outside knit: one by one.
		for _, d := range dels {
			if err = queue(d); err == nil {
				if err = c.Flush(); notFound(err) {
					err = nil
				}
			}
			if err != nil {
				break
			}
		}
	}
	if err != nil && !notFound(err) {
		return kernelErr(fmt.Sprintf("deleting port mappings of %s", o), err)
	}
	return p.flushConntrack(removed)
}

// Check verifies that each mapping is in place for o toward the container
// addresses, with its masquerade entries and the chains that use them.
func (p *PortMap) Check(o Owner, addrs []net.IPNet, maps []PortMapping, opt PortMapOptions) (err error) {
	if err := o.Validate(); err != nil {
		return err
	}
	if err := ValidateMappings(maps); err != nil || len(maps) == 0 {
		return err
	}
	ctrs, err := ctrAddrs(addrs)
	if err != nil {
		return err
	}
	elems, err := p.plan(o, ctrs, maps, opt)
	if err != nil {
		return err
	}
	c, r, end, err := p.base.begin(false, true)
	if err != nil {
		return err
	}
	defer end(&err)
	var problems []string
	structure := map[*family]bool{}
	for _, e := range elems {
		if !structure[e.fam] {
			structure[e.fam] = true
			var lens []int
			for _, x := range elems {
				if src, _, ok := parseSNATKey(x.elem.Key); x.pm == nil && x.fam == e.fam && ok {
					lens = append(lens, src.Bits())
				}
			}
			if s, err := pmCheckStructure(c, e.fam, lens); err != nil {
				return err
			} else if s != "" {
				problems = append(problems, s)
			}
		}
		got, found, err := r.lookup(e.set, e.elem.Key)
		if err != nil {
			return kernelErr("looking up a port mapping", err)
		}
		var what string
		if e.pm != nil {
			what = "port mapping " + e.pm.String()
		} else {
			what = "masquerade entry " + describeSNAT(e.elem)
		}
		switch {
		case !found:
			problems = append(problems, fmt.Sprintf("%s missing from %s %s %s", what, e.fam.name, TableName, e.set.Name))
		case got.comment != o.String():
			problems = append(problems, fmt.Sprintf("%s belongs to %q", what, got.comment))
		case e.pm != nil && string(got.data) != string(e.elem.Val):
			v, _ := parseDNATValue(got.data)
			problems = append(problems, fmt.Sprintf("%s points to %s", what, v))
		}
	}
	if len(problems) > 0 {
		return cni.NewError(cni.ErrInternal, "port mapping check failed for "+o.String()+": "+problems[0], strings.Join(problems[1:], "; "))
	}
	return nil
}

func describeSNAT(e nftables.SetElement) string {
	src, ctr, _ := parseSNATKey(e.Key)
	return fmt.Sprintf("from %s to %s", src, ctr)
}

// pmCheckStructure returns "" when the family's chains hold their rules,
// with a masquerade rule for each prefix length in lens.
func pmCheckStructure(c *nftables.Conn, f *family, lens []int) (string, error) {
	objs := pmObjectsFor(f)
	for _, ch := range []struct {
		name string
		want int
	}{{pmPrerouting, 1}, {pmOutput, 1}, {pmDNAT, 2}, {pmPostrouting, -1}} {
		rules, err := dumpRules(c, f.table, objs.chain(ch.name))
		if notFound(err) {
			return fmt.Sprintf("chain %s not found in table %s %s", ch.name, f.name, TableName), nil
		}
		if err != nil {
			return "", kernelErr("listing the port mapping rules", err)
		}
		if ch.want >= 0 && len(rules) != ch.want {
			return fmt.Sprintf("chain %s %s %s has %d rules, want %d", f.name, TableName, ch.name, len(rules), ch.want), nil
		}
		if ch.name != pmPostrouting {
			continue
		}
		have := map[int]bool{}
		for _, r := range rules {
			if l, ok := objs.ruleLen(r); ok {
				have[l] = true
			}
		}
		for _, l := range lens {
			if !have[l] {
				return fmt.Sprintf("chain %s %s %s has no masquerade rule for sources of prefix length %d", f.name, TableName, ch.name, l), nil
			}
		}
	}
	return "", nil
}

// List returns every port mapping in the namespace with its owner, sorted
// by owner, then host port.
func (p *PortMap) List() (_ []PortEntry, err error) {
	c, _, end, err := p.base.begin(false, false)
	if err != nil {
		return nil, err
	}
	defer end(&err)
	return p.list(c)
}

func (p *PortMap) list(c *nftables.Conn) ([]PortEntry, error) {
	var out []PortEntry
	for _, f := range families {
		objs := pmObjectsFor(f)
		for _, set := range []*nftables.Set{objs.hostIP, objs.any} {
			elems, err := dumpElements(c, set)
			if notFound(err) {
				continue
			}
			if err != nil {
				return nil, kernelErr("listing port mapping map "+set.Name, err)
			}
			addrLen := 0
			if set == objs.hostIP {
				addrLen = int(f.addrLen)
			}
			for _, e := range elems {
				host, proto, port, ok := parseDNATKey(e.Key, addrLen)
				v, okv := parseDNATValue(e.Val)
				o, err := ParseOwner(e.Comment)
				if !ok || !okv || err != nil {
					continue
				}
				out = append(out, PortEntry{Owner: o, Container: v, Mapping: PortMapping{
					HostPort: port, ContainerPort: v.Port(), Protocol: protoName(proto), HostIP: host}})
			}
		}
	}
	slices.SortFunc(out, func(a, b PortEntry) int {
		if c := strings.Compare(a.Owner.String(), b.Owner.String()); c != 0 {
			return c
		}
		return int(a.Mapping.HostPort) - int(b.Mapping.HostPort)
	})
	return out, nil
}

// GC removes every mapping and masquerade entry of network whose attachment
// is not in keep (by container ID and interface name). A family whose maps
// and set end up empty loses its port mapping chains and maps too.
func (p *PortMap) GC(network string, keep []Owner) (err error) {
	if err := cni.ValidateNetworkName(network); err != nil {
		return err
	}
	c, _, end, err := p.base.begin(true, false)
	if err != nil {
		return err
	}
	defer end(&err)
	stale := func(comment string) bool {
		o, err := ParseOwner(comment)
		if err != nil || o.Network != network {
			return false
		}
		return !slices.ContainsFunc(keep, func(k Owner) bool { return k.ContainerID == o.ContainerID && k.IfName == o.IfName })
	}
	var removed []PortMapping
	for _, f := range families {
		objs := pmObjectsFor(f)
		left, exists := 0, false
		for _, set := range []*nftables.Set{objs.hostIP, objs.any, objs.snat} {
			elems, err := dumpElements(c, set)
			if notFound(err) {
				continue
			}
			if err != nil {
				return kernelErr("listing port mapping set "+set.Name, err)
			}
			exists = true
			var drop []nftables.SetElement
			for _, e := range elems {
				if !stale(e.Comment) {
					left++
					continue
				}
				p.base.log.Debug("gc: removing port mapping entry", "set", set.Name, "owner", e.Comment)
				drop = append(drop, nftables.SetElement{Key: e.Key, KeyEnd: e.KeyEnd})
				if set != objs.snat {
					addrLen := 0
					if set == objs.hostIP {
						addrLen = int(f.addrLen)
					}
					if host, proto, port, ok := parseDNATKey(e.Key, addrLen); ok {
						removed = append(removed, PortMapping{HostPort: port, Protocol: protoName(proto), HostIP: host})
					}
				}
			}
			for chunk := range slices.Chunk(drop, 256) {
				if err := c.SetDeleteElements(set, chunk); err != nil {
					return kernelErr("preparing the port mapping batch", err)
				}
				if err := c.Flush(); err != nil {
					return kernelErr("removing port mappings of network "+network, err)
				}
			}
		}
		if exists && left == 0 {
			p.base.log.Debug("gc: removing port mapping objects", "family", f.name)
			objs.queueDelete(c)
			if err := c.Flush(); err != nil && !notFound(err) {
				return kernelErr("removing the port mapping chains", err)
			}
		}
	}
	return p.flushConntrack(removed)
}
