// Package nft is knit's nftables layer, spoken over netlink (never by
// running nft or iptables): IP masquerade for the bridge and ptp plugins
// (Masq), published ports for portmap (PortMap, with UDP conntrack flushing)
// and the forward-path firewall with bridge isolation (Firewall). Each keeps
// its per-container state as owner-tagged elements of a few sets and maps,
// so ADD, DEL and CHECK never dump them; portmap_layout.go and firewall.go
// show their chains.
//
// Everything lives in one table per address family, `ip knit` and
// `ip6 knit`. Masquerade uses, per network (id = 12 hex digits of the
// SHA-256 of the network name):
//
//	chain postrouting { type nat hook postrouting priority srcnat; policy accept;
//	    ip saddr @srcs-<id> jump masq-<id>        # comment "knit network NAME"
//	}
//	chain masq-<id> {
//	    ip daddr @nets-<id> return                 # the network's own subnets
//	    ip daddr 224.0.0.0/4 return                # ff00::/8 in ip6
//	    masquerade
//	}
//	set srcs-<id> { type ipv4_addr; elements = { 10.22.0.5 comment "NAME/CONTAINERID/IFNAME" } }
//	set nets-<id> { type ipv4_addr; flags interval; elements = { 10.22.0.0/16 } }
//
// A container's ADD is one netlink batch that adds its addresses to srcs
// (and its subnet to nets); DEL looks each element up by key and deletes it
// if the comment names the same owner. Neither dumps a set, so their cost
// does not grow with the number of containers. The network's chain, sets and
// jump rule are created in the same batch as the first element and kept
// afterwards (like the reference plugins keep their chains); GC removes them
// once the network has no attachments left. Changes are serialised between
// processes by a file lock (DefaultLockFile), which makes the "create the
// network's rules once" and "check the owner, then delete" steps safe.
//
// Sets and rules carry comments naming their network (NetworkTag) and set
// elements their owner (OwnerTag), so GC, `knit ls` and the visualizer can
// attribute everything; chains are named by the network's id (google/nftables
// v0.3.0 cannot attach userdata to chains) and attributed through their rules.
//
// Unlike the reference plugins, which return only for a container's own
// subnet, traffic between any two subnets of the same network is left
// unmasqueraded. The first Add of a network in a namespace costs one aborted
// batch (~15 ms, the kernel waits for RCU); later ones are one batch each.
//
// Releasing a netfilter socket after a change also waits for RCU; a plugin
// hands its sockets to a detached closer process instead (HandOff, Detach,
// ForkCloser in detach.go and fork_linux.go) and exits at once.
package nft

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/google/nftables"
	"github.com/knit-cni/knit/pkg/cni"
	"golang.org/x/sys/unix"
)

// Masq manages IP masquerade for container addresses.
type Masq struct {
	netnsFD  int
	lockPath string
	log      *slog.Logger

	mu    sync.Mutex     // one operation at a time on the sockets below
	nft   *nftables.Conn // lasting; nil until first use
	elems *elemReader    // single-element lookups; nil until first use
}

// Option configures a Masq.
type Option func(*Masq)

// WithNetNS makes the Masq work in the network namespace open as fd instead
// of the caller's. The fd must stay open while the Masq is used.
func WithNetNS(fd int) Option { return func(m *Masq) { m.netnsFD = fd } }

// WithLockFile sets the lock file serialising changes between processes
// (default DefaultLockFile). Every process changing the same namespace must
// use the same file.
func WithLockFile(path string) Option { return func(m *Masq) { m.lockPath = path } }

// WithLogger sets the logger for debug messages (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(m *Masq) { m.log = l } }

// NewMasq returns a Masq for the current network namespace unless an option
// says otherwise.
func NewMasq(opts ...Option) *Masq {
	m := &Masq{lockPath: DefaultLockFile, log: slog.Default()}
	for _, o := range opts {
		o(m)
	}
	return m
}

// Entry is one masqueraded address and the attachment that owns it.
type Entry struct {
	Owner Owner
	Addr  net.IP
}

// target is one validated container address.
type target struct {
	addr   netip.Addr
	subnet netip.Prefix
}

func (t target) fam() *family { return familyOf(t.addr) }

// parseAddrs validates container addresses (address + prefix length).
func parseAddrs(addrs []net.IPNet) ([]target, error) {
	var out []target
	for _, n := range addrs {
		a, ok := netip.AddrFromSlice(n.IP)
		if !ok {
			return nil, cni.NewError(cni.ErrInvalidNetworkConfig, "invalid container address for masquerade",
				fmt.Sprintf("%q is not an IP address", n.IP.String()))
		}
		a = a.Unmap()
		ones, bits := n.Mask.Size()
		if bits == 128 && a.Is4() && ones >= 96 {
			ones, bits = ones-96, 32
		}
		if bits != a.BitLen() {
			return nil, cni.NewError(cni.ErrInvalidNetworkConfig, "invalid container address for masquerade",
				fmt.Sprintf("%s has no valid prefix length (mask %s): give address/prefix, e.g. 10.22.0.5/16", a, n.Mask.String()))
		}
		if a.IsUnspecified() || a.IsMulticast() || ones == 0 {
			return nil, cni.NewError(cni.ErrInvalidNetworkConfig, "invalid container address for masquerade",
				fmt.Sprintf("%s/%d is not a unicast address in a subnet", a, ones))
		}
		t := target{addr: a, subnet: netip.PrefixFrom(a, ones).Masked()}
		if !slices.ContainsFunc(out, func(o target) bool { return o.addr == t.addr }) {
			out = append(out, t)
		}
	}
	return out, nil
}

// Close releases the Masq's netlink sockets. The Masq stays usable: the
// next operation opens new ones.
//
// Releasing an nftables socket waits for the kernel to finish freeing the
// last transaction (an RCU grace period, often 10–20 ms), so a long-lived
// Masq keeps its sockets between operations and a plugin can simply exit.
func (m *Masq) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.closeLocked()
}

func (m *Masq) closeLocked() error {
	var errs []error
	if m.nft != nil {
		errs = append(errs, m.nft.CloseLasting())
		m.nft = nil
	}
	if m.elems != nil {
		errs = append(errs, m.elems.Close())
		m.elems = nil
	}
	return errors.Join(errs...)
}

// begin starts an operation: it takes the Masq's mutex and, when exclusive
// (the operation changes nftables), the cross-process lock, and makes sure
// the sockets are open. end must be called with the operation's error;
// after a failure the sockets are dropped, since a failed exchange may leave
// unread messages behind.
func (m *Masq) begin(exclusive, lookups bool) (c *nftables.Conn, r *elemReader, end func(*error), err error) {
	m.mu.Lock()
	unlock := func() {}
	if exclusive {
		markChanged()
		if unlock, err = lock(m.lockPath); err != nil {
			m.mu.Unlock()
			return nil, nil, nil, err
		}
	}
	if m.nft == nil {
		m.nft, err = nftables.New(nftables.WithNetNSFd(m.netnsFD), nftables.AsLasting())
	}
	if err == nil && lookups && m.elems == nil {
		// Only for callers that look single elements up: an ADD does not,
		// and every socket opened is one more for the closer to hold.
		m.elems, err = dialElemReader(m.netnsFD)
	}
	if err != nil {
		m.closeLocked()
		unlock()
		m.mu.Unlock()
		return nil, nil, nil, kernelErr("opening an nftables netlink socket", err)
	}
	return m.nft, m.elems, func(errp *error) {
		var ne *netlinkError
		if errors.As(*errp, &ne) {
			m.closeLocked()
		}
		unlock()
		m.mu.Unlock()
	}, nil
}

// notFound reports whether a netlink request failed because the table,
// chain, set or element does not exist. google/nftables' dump helpers
// flatten the errno into text (%v), so the text is matched as well.
func notFound(err error) bool {
	return err != nil && (errors.Is(err, unix.ENOENT) || strings.HasSuffix(err.Error(), unix.ENOENT.Error()))
}

// kernelErr wraps a netlink failure with the CNI code and a hint.
func kernelErr(what string, err error) error {
	hint := ""
	switch {
	case errors.Is(err, unix.EPERM):
		hint = " (needs CAP_NET_ADMIN: run the plugin as root)"
	case errors.Is(err, unix.EPROTONOSUPPORT), errors.Is(err, unix.EAFNOSUPPORT), errors.Is(err, unix.EOPNOTSUPP):
		hint = " (the kernel lacks nf_tables or nft_masq: load the nf_tables and nft_masq modules)"
	}
	return &netlinkError{cni.NewError(cni.ErrInternal, what, err.Error()+hint)}
}

// netlinkError marks a failed netlink exchange (after which the sockets are
// reopened); it unwraps to the CNI error.
type netlinkError struct{ cerr *cni.Error }

func (e *netlinkError) Error() string { return e.cerr.Error() }
func (e *netlinkError) Unwrap() error { return e.cerr }

// Add masquerades traffic from the given container addresses (address and
// prefix; the prefix gives the subnet traffic to which is left alone) leaving
// the host, and records o as their owner. It is idempotent, and an address
// still recorded for another owner (a stale attachment) is taken over.
func (m *Masq) Add(o Owner, addrs []net.IPNet) (err error) {
	if err := o.Validate(); err != nil {
		return err
	}
	targets, err := parseAddrs(addrs)
	if err != nil || len(targets) == 0 {
		return err
	}
	c, _, end, err := m.begin(true, false)
	if err != nil {
		return err
	}
	defer end(&err)

	create := map[*family]bool{}        // families whose network objects must be made
	skipNets := map[netip.Prefix]bool{} // subnets already covered in nets
	for attempt := 0; ; attempt++ {
		if err := m.queueAdd(c, o, targets, create, skipNets); err != nil {
			return kernelErr("preparing the masquerade batch", err)
		}
		err := c.Flush()
		if err == nil {
			return nil
		}
		if attempt == 2 {
			return kernelErr(fmt.Sprintf("adding masquerade for %s", o), err)
		}
		switch {
		case notFound(err):
			// The network's sets are missing in some family: find which
			// (under the lock nobody else creates them meanwhile).
			for _, t := range targets {
				obj := objectsFor(t.fam(), o.Network)
				if _, err := c.GetSetByName(obj.fam.table, obj.srcs.Name); err != nil {
					m.log.Debug("creating masquerade objects", "family", obj.fam.name, "network", o.Network, "chain", obj.chain.Name)
					create[obj.fam] = true
				}
			}
		case errors.Is(err, unix.EEXIST):
			// A subnet overlaps an interval already in nets.
			if err := m.resolveOverlap(c, o.Network, targets, skipNets); err != nil {
				return err
			}
		default:
			return kernelErr(fmt.Sprintf("adding masquerade for %s", o), err)
		}
	}
}

// queueAdd queues one attempt of Add: network objects for the families in
// create, the subnets not in skip, and each address with o's comment. An
// address is added, deleted and added again so that an existing element
// (possibly with a stale owner) ends up with o's comment, atomically.
func (m *Masq) queueAdd(c *nftables.Conn, o Owner, targets []target, create map[*family]bool, skip map[netip.Prefix]bool) error {
	objs := map[*family]*netObjects{}
	for _, f := range families {
		if create[f] {
			objs[f] = objectsFor(f, o.Network)
			if err := objs[f].queueCreate(c); err != nil {
				return err
			}
		}
	}
	subnets := map[netip.Prefix]bool{}
	for _, t := range targets {
		obj := objs[t.fam()]
		if obj == nil {
			obj = objectsFor(t.fam(), o.Network)
			objs[t.fam()] = obj
		}
		if !skip[t.subnet] && !subnets[t.subnet] {
			subnets[t.subnet] = true
			if err := c.SetAddElements(obj.nets, intervalElems(t.subnet)); err != nil {
				return err
			}
		}
		key := t.addr.AsSlice()
		add := []nftables.SetElement{{Key: key, Comment: o.String()}}
		if err := c.SetAddElements(obj.srcs, add); err != nil {
			return err
		}
		if err := c.SetDeleteElements(obj.srcs, []nftables.SetElement{{Key: key}}); err != nil {
			return err
		}
		if err := c.SetAddElements(obj.srcs, add); err != nil {
			return err
		}
	}
	return nil
}

// resolveOverlap handles EEXIST from the nets set: a subnet inside an
// interval already there needs no element; one that only partly overlaps is
// a configuration conflict.
func (m *Masq) resolveOverlap(c *nftables.Conn, network string, targets []target, skip map[netip.Prefix]bool) error {
	for _, f := range families {
		obj := objectsFor(f, network)
		var have []netip.Prefix
		loaded := false
		for _, t := range targets {
			if t.fam() != f || skip[t.subnet] {
				continue
			}
			if !loaded {
				var err error
				if have, err = m.subnets(c, obj); err != nil {
					return kernelErr("reading the masquerade subnets of network "+network, err)
				}
				loaded = true
			}
			for _, h := range have {
				switch {
				case h.Contains(t.subnet.Addr()) && h.Bits() <= t.subnet.Bits():
					skip[t.subnet] = true
				case h.Overlaps(t.subnet):
					return cni.NewError(cni.ErrInvalidNetworkConfig,
						fmt.Sprintf("subnet %s of %s overlaps subnet %s already masqueraded for network %q", t.subnet, t.addr, h, network),
						"a network's subnets must not partly overlap: remove the stale attachments (knit gc) or fix the IPAM ranges")
				}
			}
		}
	}
	return nil
}

// subnets lists the intervals in the network's nets set as prefixes (an
// interval that is not a prefix is reported by its covering range start).
func (m *Masq) subnets(c *nftables.Conn, obj *netObjects) ([]netip.Prefix, error) {
	elems, err := dumpElements(c, obj.nets)
	if err != nil {
		if notFound(err) {
			return nil, nil
		}
		return nil, err
	}
	return intervalsToPrefixes(elems), nil
}

// intervalsToPrefixes turns interval set elements (start, and end marked
// IntervalEnd, in any order) into prefixes.
func intervalsToPrefixes(elems []nftables.SetElement) []netip.Prefix {
	var starts, ends []netip.Addr
	for _, e := range elems {
		a, ok := netip.AddrFromSlice(e.Key)
		if !ok {
			continue
		}
		if e.IntervalEnd {
			ends = append(ends, a)
		} else {
			starts = append(starts, a)
		}
	}
	slices.SortFunc(starts, netip.Addr.Compare)
	slices.SortFunc(ends, netip.Addr.Compare)
	var out []netip.Prefix
	for _, s := range starts {
		// The interval ends at the first end marker after its start.
		last := netip.Addr{}
		for _, e := range ends {
			if e.Compare(s) > 0 {
				last = e.Prev()
				break
			}
		}
		out = append(out, rangePrefix(s, last))
	}
	return out
}

// rangePrefix returns the prefix of the range [first, last] (last invalid =
// end of the address space), or the widest prefix starting at first inside it.
func rangePrefix(first, last netip.Addr) netip.Prefix {
	for bits := 0; bits <= first.BitLen(); bits++ {
		p := netip.PrefixFrom(first, bits)
		if p.Masked().Addr() != first {
			continue
		}
		l := lastAddr(p)
		if !last.IsValid() || l.Compare(last) <= 0 {
			return p
		}
	}
	return netip.PrefixFrom(first, first.BitLen())
}

// Del stops masquerading the given addresses if o owns them. With no
// addresses (no prevResult), it finds o's addresses by their owner comments,
// which costs one dump of this network's sets. Addresses that are missing or
// owned by someone else are left alone: DEL succeeds.
func (m *Masq) Del(o Owner, addrs []net.IPNet) (err error) {
	if err := o.Validate(); err != nil {
		return err
	}
	targets, err := parseAddrs(addrs)
	if err != nil {
		return err
	}
	c, r, end, err := m.begin(true, true)
	if err != nil {
		return err
	}
	defer end(&err)

	var mine []netip.Addr
	if len(targets) == 0 {
		entries, err := m.list(c, o.Network)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if e.Owner == o {
				a, _ := netip.AddrFromSlice(e.Addr)
				mine = append(mine, a.Unmap())
			}
		}
	} else {
		for _, t := range targets {
			obj := objectsFor(t.fam(), o.Network)
			owner, found, err := r.get(obj.srcs, t.addr.AsSlice())
			if err != nil {
				return kernelErr(fmt.Sprintf("looking up the masquerade of %s", t.addr), err)
			}
			if !found {
				m.log.Debug("masquerade already gone", "addr", t.addr, "owner", o.String())
				continue
			}
			if owner != o.String() {
				m.log.Debug("masquerade belongs to another attachment; leaving it", "addr", t.addr, "owner", owner, "deleter", o.String())
				continue
			}
			mine = append(mine, t.addr)
		}
	}
	if len(mine) == 0 {
		return nil
	}
	queue := func(a netip.Addr) error {
		obj := objectsFor(familyOf(a), o.Network)
		return c.SetDeleteElements(obj.srcs, []nftables.SetElement{{Key: a.AsSlice()}})
	}
	for _, a := range mine {
		if err := queue(a); err != nil {
			return kernelErr("preparing the masquerade batch", err)
		}
	}
	err = c.Flush()
	if notFound(err) && len(mine) > 1 {
		// Something outside knit removed one of them meanwhile, which
		// aborted the whole batch: delete one by one.
		for _, a := range mine {
			if err = queue(a); err == nil {
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
		return kernelErr(fmt.Sprintf("deleting masquerade for %s", o), err)
	}
	return nil
}

// Check verifies that every given address is masqueraded for o: its element
// is in the network's srcs set with o's comment, its subnet is in nets, and
// the jump and masquerade rules are in place. With no addresses it checks
// that o has at least one. The error names exactly what is missing.
func (m *Masq) Check(o Owner, addrs []net.IPNet) (err error) {
	if err := o.Validate(); err != nil {
		return err
	}
	targets, err := parseAddrs(addrs)
	if err != nil {
		return err
	}
	c, r, end, err := m.begin(false, true)
	if err != nil {
		return err
	}
	defer end(&err)
	if len(targets) == 0 {
		entries, err := m.list(c, o.Network)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if e.Owner == o {
				a, _ := netip.AddrFromSlice(e.Addr)
				targets = append(targets, target{addr: a.Unmap()})
			}
		}
		if len(targets) == 0 {
			return cni.NewError(cni.ErrInternal, fmt.Sprintf("masquerade for %s missing", o),
				"no address of this attachment is in the network's nftables sets: repeat ADD")
		}
	}
	var problems []string
	checked := map[*family]string{} // family -> structural problem ("" = fine)
	subnets := map[*family][]netip.Prefix{}
	for _, t := range targets {
		missing := func(what string) {
			problems = append(problems, fmt.Sprintf("masquerade for %s (network %s) missing: %s", t.addr, o.Network, what))
		}
		obj := objectsFor(t.fam(), o.Network)
		owner, found, err := r.get(obj.srcs, t.addr.AsSlice())
		if err != nil {
			return kernelErr(fmt.Sprintf("looking up the masquerade of %s", t.addr), err)
		}
		switch {
		case !found:
			missing(fmt.Sprintf("set element not found in %s %s set %s", obj.fam.name, TableName, obj.srcs.Name))
			continue
		case owner != o.String():
			missing(fmt.Sprintf("set element in %s %s set %s belongs to %q", obj.fam.name, TableName, obj.srcs.Name, owner))
			continue
		}
		if _, done := checked[obj.fam]; !done {
			p, err := m.checkStructure(c, obj)
			if err != nil {
				return err
			}
			checked[obj.fam] = p
		}
		if p := checked[obj.fam]; p != "" {
			missing(p)
			continue
		}
		if t.subnet.IsValid() {
			have, ok := subnets[obj.fam]
			if !ok {
				if have, err = m.subnets(c, obj); err != nil {
					return kernelErr("reading the masquerade subnets of network "+o.Network, err)
				}
				subnets[obj.fam] = have
			}
			if !slices.ContainsFunc(have, func(h netip.Prefix) bool {
				return h.Contains(t.subnet.Addr()) && h.Bits() <= t.subnet.Bits()
			}) {
				missing(fmt.Sprintf("subnet %s not in %s %s set %s (traffic inside the subnet would be masqueraded)",
					t.subnet, obj.fam.name, TableName, obj.nets.Name))
			}
		}
	}
	if len(problems) > 0 {
		return cni.NewError(cni.ErrInternal, problems[0], strings.Join(problems[1:], "; "))
	}
	return nil
}

// checkStructure returns "" when the network's jump rule and chain are in
// place in this family, else what is missing.
func (m *Masq) checkStructure(c *nftables.Conn, obj *netObjects) (string, error) {
	where := obj.fam.name + " " + TableName
	rules, err := dumpRules(c, obj.fam.table, postrouting(obj.fam))
	if err != nil {
		if notFound(err) {
			return fmt.Sprintf("chain %s not found in table %s", PostroutingChain, where), nil
		}
		return "", kernelErr("listing the postrouting rules", err)
	}
	if !slices.ContainsFunc(rules, obj.isJump) {
		return fmt.Sprintf("rule \"%s saddr @%s jump %s\" not found in chain %s %s", obj.fam.name, obj.srcs.Name, obj.chain.Name, where, PostroutingChain), nil
	}
	rules, err = dumpRules(c, obj.fam.table, obj.chain)
	if err != nil {
		if notFound(err) {
			return fmt.Sprintf("chain %s not found in table %s", obj.chain.Name, where), nil
		}
		return "", kernelErr("listing the masquerade rules", err)
	}
	subnetReturn, masq := obj.hasMasqRules(rules)
	switch {
	case !masq:
		return fmt.Sprintf("masquerade rule not found in chain %s %s", where, obj.chain.Name), nil
	case !subnetReturn:
		return fmt.Sprintf("rule \"%s daddr @%s return\" not found in chain %s %s", obj.fam.name, obj.nets.Name, where, obj.chain.Name), nil
	}
	return "", nil
}

// List returns the masqueraded addresses of a network with their owners,
// sorted by owner and address. A network without masquerade has none.
func (m *Masq) List(network string) (_ []Entry, err error) {
	if err := cni.ValidateNetworkName(network); err != nil {
		return nil, err
	}
	c, _, end, err := m.begin(false, false)
	if err != nil {
		return nil, err
	}
	defer end(&err)
	return m.list(c, network)
}

func (m *Masq) list(c *nftables.Conn, network string) ([]Entry, error) {
	var out []Entry
	for _, f := range families {
		obj := objectsFor(f, network)
		elems, err := dumpElements(c, obj.srcs)
		if err != nil {
			if notFound(err) {
				continue
			}
			return nil, kernelErr("listing the masquerade set "+obj.srcs.Name, err)
		}
		for _, e := range elems {
			o, err := ParseOwner(e.Comment)
			if err != nil || o.Network != network {
				// Another network with the same hash, or not knit's.
				continue
			}
			out = append(out, Entry{Owner: o, Addr: net.IP(slices.Clone(e.Key))})
		}
	}
	slices.SortFunc(out, func(a, b Entry) int {
		if c := strings.Compare(a.Owner.String(), b.Owner.String()); c != 0 {
			return c
		}
		x, _ := netip.AddrFromSlice(a.Addr)
		y, _ := netip.AddrFromSlice(b.Addr)
		return x.Compare(y)
	})
	return out, nil
}

// GC removes the masquerade of every attachment of network not in keep
// (compared by container ID and interface name). When no attachment is left
// in a family, the network's chain, sets and jump rule go too.
func (m *Masq) GC(network string, keep []Owner) (err error) {
	if err := cni.ValidateNetworkName(network); err != nil {
		return err
	}
	c, _, end, err := m.begin(true, false)
	if err != nil {
		return err
	}
	defer end(&err)

	kept := func(o Owner) bool {
		return slices.ContainsFunc(keep, func(k Owner) bool {
			return k.ContainerID == o.ContainerID && k.IfName == o.IfName
		})
	}
	for _, f := range families {
		obj := objectsFor(f, network)
		elems, err := dumpElements(c, obj.srcs)
		if err != nil {
			if notFound(err) {
				continue
			}
			return kernelErr("listing the masquerade set "+obj.srcs.Name, err)
		}
		var drop []nftables.SetElement
		for _, e := range elems {
			o, err := ParseOwner(e.Comment)
			if err == nil && o.Network != network {
				continue // another network sharing the hash: not ours to judge
			}
			if err == nil && kept(o) {
				continue
			}
			m.log.Debug("gc: removing masquerade", "network", network, "addr", net.IP(e.Key).String(), "owner", e.Comment)
			drop = append(drop, nftables.SetElement{Key: e.Key})
		}
		if len(drop) == len(elems) { // nothing kept, no other network's elements
			rules, err := dumpRules(c, f.table, postrouting(f))
			if err != nil && !notFound(err) {
				return kernelErr("listing the postrouting rules", err)
			}
			m.log.Debug("gc: removing network masquerade objects", "family", f.name, "network", network, "chain", obj.chain.Name)
			if err := obj.queueDelete(c, obj.jumpRules(rules)); err != nil {
				return kernelErr("preparing the masquerade batch", err)
			}
		} else {
			// In chunks: one netlink batch must fit in a socket buffer.
			for chunk := range slices.Chunk(drop, 512) {
				if err := c.SetDeleteElements(obj.srcs, chunk); err != nil {
					return kernelErr("preparing the masquerade batch", err)
				}
				if err := c.Flush(); err != nil {
					return kernelErr("removing masquerade for network "+network, err)
				}
			}
		}
		if err := c.Flush(); err != nil {
			return kernelErr("removing masquerade for network "+network, err)
		}
	}
	return nil
}
