// Package hostlocal is the host-local IPAM plugin: it allocates one address
// per range set from files on local disk, config- and layout-compatible with
// the reference plugin (see package store for the layout), and adds what the
// reference lacks: an idempotent re-ADD, GC and STATUS, and lock errors that
// are errors.
//
// Every ADD, DEL, CHECK and GC holds the network's lock for its whole run and
// lists the directory once. ADD reads file contents only where the owner
// hints do not already say who owns an address; DEL reads the files the hints
// attribute to its container or to nobody; CHECK and GC read every file.
//
// The listing is what keeps ADD from handing out duplicates: files another
// implementation wrote carry no hint and can only be found by listing, and
// a directory's mtime cannot prove that nobody else wrote since knit last
// looked (it has the kernel's coarse clock granularity). It is the one part
// of ADD and DEL that grows with the allocations: ~0.3-0.5 ms per 1,000
// names per directory on ext4, ADD's whole scan 0.2 ms at 10 allocated and
// ~2 ms at 1,000 (measured in the bench's scale setup; bridge runs IPAM
// concurrently with its link work, so its ADD latency barely shows it).
//
// Hints can be wrong in one case: another implementation releases an address
// and gives the same address to a new owner before knit looks again. ADD may
// then miss that the new owner already holds it (and hand it a second
// address) and DEL of the new owner may miss it; CHECK and GC read every file,
// so GC reclaims what such a DEL missed.
//
// An address file that is empty or blank (a writer crashed between creating
// and filling it) is owned by nobody, unless a knit hint names its owner
// (knit writes the hint first, so the hint is the crashed writer): then DEL
// of that owner releases it and its re-ADD replaces it. An unhinted empty
// file is left alone by ADD while it is younger than EmptyFileGrace (a
// writer that ignores the lock, as the reference does on lock errors, might
// still be filling it) and reclaimed after; GC always releases it. knit
// itself never leaves a torn file (see package store).
//
// Reboots. The first ADD, DEL, CHECK or GC on a network after a reboot
// releases every allocation knit made in an earlier boot (package store
// records the boot id beside its hints): no container of an earlier boot
// still exists. Allocations the reference plugin made carry no boot id and
// may belong to a live container, so they stay until their DEL or a GC.
// STATUS counts earlier-boot allocations as free.
package hostlocal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/knit-cni/knit/internal/ipam/ranges"
	"github.com/knit-cni/knit/pkg/cni"
	"github.com/knit-cni/knit/pkg/cni/skel"
	"github.com/knit-cni/knit/plugins/ipam/hostlocal/store"
)

// EmptyFileGrace is how old an empty address file must be before ADD may
// reclaim it.
const EmptyFileGrace = time.Minute

// Info describes the plugin.
var Info = skel.Info{
	Name:  "host-local",
	About: "knit host-local IPAM: addresses from range sets, allocations on local disk",
}

// Plugin is the host-local plugin.
var Plugin skel.Plugin = hostLocal{}

type hostLocal struct{}

var (
	_ skel.GCer     = hostLocal{}
	_ skel.Statuser = hostLocal{}
)

// Add allocates one address per range set, or returns the addresses the
// container ID + ifname already holds.
func (hostLocal) Add(_ context.Context, req *skel.Request) (*cni.Result, error) {
	cfg, err := LoadConfig(req.Config, req.Args)
	if err != nil {
		return nil, err
	}
	res := &cni.Result{CNIVersion: req.Version, Routes: cfg.Routes}
	if cfg.ResolvConf != "" {
		if res.DNS, err = ReadResolvConf(cfg.ResolvConf); err != nil {
			return nil, err
		}
	}
	st, err := store.Open(cfg.DataDir, cfg.Name)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	me := store.Owner{ContainerID: req.ContainerID, IfName: req.IfName}
	// snap stays nil on the fast path: the sealed owner index answers what
	// this attachment holds, and free addresses are probed by name.
	var snap *store.Snapshot
	var owners map[netip.Addr]store.Owner
	var mine []netip.Addr
	if st.Trusted() {
		mine = indexed(st, me)
	} else {
		if snap, owners, mine, err = scanForAdd(st, me); err != nil {
			return nil, err
		}
	}

	var reserved []netip.Addr // by this ADD, released again on failure
	fail := func(err error) (*cni.Result, error) {
		for _, a := range reserved {
			if rerr := st.Release(a, []store.Owner{me}); rerr != nil {
				slog.Warn("host-local: cannot roll back reservation", "ip", a, "err", rerr)
			}
		}
		return nil, err
	}
	for i, set := range cfg.Sets {
		want, requested := cfg.Requested[i]
		held := netip.Addr{}
		for _, a := range mine {
			if set.Contains(a) {
				held = a
				break
			}
		}
		var got netip.Addr
		switch {
		case held.IsValid():
			if requested && want != held {
				return fail(cni.Errorf(cni.ErrInvalidNetworkConfig,
					"container %s interface %s already holds %s in range set %d, not the requested %s: DEL the attachment first",
					me.ContainerID, me.IfName, held, i, want))
			}
			got = held
		case requested:
			if err := reserveRequested(st, snap, owners, want, me, i); err != nil {
				return fail(err)
			}
			got = want
			reserved = append(reserved, got)
		default:
			got, err = allocate(st, set, i, me, &snap)
			if err != nil {
				return fail(err)
			}
			reserved = append(reserved, got)
		}
		if snap != nil {
			snap.Allocated[got] = []store.Owner{me}
		}
		r := set[set.RangeFor(got)]
		res.IPs = append(res.IPs, &cni.IPConfig{
			Address: net.IPNet{IP: net.IP(got.AsSlice()), Mask: net.CIDRMask(r.Subnet.Bits(), got.BitLen())},
			Gateway: net.IP(r.Gateway.AsSlice()),
		})
	}
	return res, nil
}

func reserveRequested(st *store.Store, snap *store.Snapshot, owners map[netip.Addr]store.Owner, a netip.Addr, me store.Owner, set int) error {
	taken := func() error {
		who, ok := owners[a]
		if !ok {
			who, _ = st.ReadOwner(a)
		}
		return cni.Errorf(cni.ErrTryAgainLater, "requested IP address %s is already allocated to %q: it must be released (DEL) before it can be given to container %s",
			a, who.String(), me.ContainerID)
	}
	if snap != nil {
		if _, ok := snap.Allocated[a]; ok {
			return taken()
		}
	}
	ok, err := st.Reserve(a, me, set)
	if err != nil {
		return err
	}
	if !ok {
		return taken()
	}
	return nil
}

// allocate reserves the first free address of set i for me, searching on
// from the last one reserved as the reference does. On the fast path (*snap
// nil) it probes addresses by name; when the range looks full it takes the
// full view (which also reclaims old empty files) and searches once more.
func allocate(st *store.Store, set ranges.Set, i int, me store.Owner, snap **store.Snapshot) (netip.Addr, error) {
	full := *snap != nil
	for {
		last, _ := st.LastReserved(i)
		probes := 0
		for _, a := range set.From(last) {
			if *snap != nil {
				if _, taken := (*snap).Allocated[a]; taken {
					continue
				}
			}
			ok, err := st.Reserve(a, me, i) // fails (false, nil) on a taken address
			if err != nil {
				return netip.Addr{}, err
			}
			if ok {
				return a, nil
			}
			if *snap == nil {
				if probes++; probes >= fastProbeLimit {
					// A crowded range: one listing beats probing on.
					s, err := st.Scan()
					if err != nil {
						return netip.Addr{}, err
					}
					*snap = s
				}
			}
		}
		if full {
			return netip.Addr{}, cni.Errorf(cni.ErrPluginNotAvailable,
				"no IP addresses available in range set %d (%s): all %d are allocated; DEL or GC unused attachments, or widen the range",
				i, set, set.Size())
		}
		// Before saying the range is full, look at everything once: old
		// empty files are reclaimed only by the full view.
		s, _, _, err := scanForAdd(st, me)
		if err != nil {
			return netip.Addr{}, err
		}
		*snap, full = s, true
	}
}

// fastProbeLimit bounds how many taken addresses an ADD on the fast path
// probes one by one before it lists the directory instead.
const fastProbeLimit = 256

// indexed returns the addresses the sealed owner index gives me, confirmed
// by their files.
func indexed(st *store.Store, me store.Owner) []netip.Addr {
	var mine []netip.Addr
	for _, a := range st.Indexed(me) {
		if o, err := st.ReadOwner(a); err == nil && o == me {
			mine = append(mine, a)
		}
	}
	slices.SortFunc(mine, netip.Addr.Compare)
	return mine
}

// scanForAdd is ADD's full view of the directory: it lists it, settles every
// owner ADD needs, repairs what an earlier crash or another implementation
// left (torn own files, old empty files, stale hints), rebuilds the owner
// index and returns the snapshot, the owners read and the addresses me holds.
func scanForAdd(st *store.Store, me store.Owner) (*store.Snapshot, map[netip.Addr]store.Owner, []netip.Addr, error) {
	snap, err := scan(st)
	if err != nil {
		return nil, nil, nil, err
	}
	owners, torn := resolve(st, snap, &me)
	var mine []netip.Addr
	for a, o := range owners {
		switch {
		case o == me && torn[a]:
			// This attachment's own earlier ADD died writing it.
			if st.Release(a, snap.Allocated[a]) == nil {
				delete(snap.Allocated, a)
			}
		case o == me:
			mine = append(mine, a)
		case o.IsZero():
			if age, err := st.Age(a); err == nil && age > EmptyFileGrace {
				slog.Info("host-local: reclaiming empty address file", "ip", a, "age", age)
				if st.Release(a, snap.Allocated[a]) == nil {
					delete(snap.Allocated, a)
				}
			}
		}
	}
	slices.SortFunc(mine, netip.Addr.Compare)
	// Every allocation's owner: read above, or its single hint's.
	all := make(map[netip.Addr]store.Owner, len(snap.Allocated))
	for a, hints := range snap.Allocated {
		if o, ok := owners[a]; ok {
			all[a] = o
		} else if len(hints) == 1 {
			all[a] = hints[0]
		}
	}
	st.Reindex(all)
	return snap, owners, mine, nil
}

// scan takes the store's snapshot and, on the first operation of a boot,
// releases the allocations knit made in earlier boots.
func scan(st *store.Store) (*store.Snapshot, error) {
	snap, err := st.Scan()
	if err != nil {
		return nil, err
	}
	store.Step("scan")
	boot := store.CurrentBoot()
	if snap.Boot == boot {
		return snap, nil
	}
	if snap.FromEarlierBoot(boot) {
		reclaimEarlierBoot(st, snap)
	}
	st.MarkBoot(boot)
	return snap, nil
}

// reclaimEarlierBoot releases every hinted allocation whose file still names
// the hinted owner (or nobody): knit made it in an earlier boot. Files
// without a hint, or reassigned since by another implementation, stay.
func reclaimEarlierBoot(st *store.Store, snap *store.Snapshot) {
	n := 0
	for a, hints := range snap.Allocated {
		if len(hints) == 0 {
			continue
		}
		o, err := st.ReadOwner(a)
		if err != nil || !o.IsZero() && !slices.Contains(hints, o) {
			continue
		}
		if err := st.Release(a, hints); err != nil {
			slog.Warn("host-local: cannot release an allocation of an earlier boot", "ip", a, "err", err)
			continue
		}
		delete(snap.Allocated, a)
		n++
	}
	slog.Info("host-local: released allocations made before the last reboot", "dir", st.Dir(), "count", n, "bootBefore", snap.Boot)
}

// resolve reads the owner of every allocated address whose hints do not
// settle it, and repairs hints that disagree with the file. With me set,
// addresses whose only hint names someone else are skipped (absent from the
// result); with me nil every file is read. An empty file with exactly one
// hint is the hinted owner's (knit writes hints first) and is marked torn.
func resolve(st *store.Store, snap *store.Snapshot, me *store.Owner) (map[netip.Addr]store.Owner, map[netip.Addr]bool) {
	for _, h := range snap.StaleHints {
		if err := st.RemoveHint(h); err != nil {
			slog.Debug("host-local: cannot remove stale hint", "err", err)
		}
	}
	snap.StaleHints = nil
	out := make(map[netip.Addr]store.Owner)
	torn := make(map[netip.Addr]bool)
	for a, hints := range snap.Allocated {
		if me != nil && len(hints) == 1 && hints[0] != *me {
			continue
		}
		o, err := st.ReadOwner(a)
		if errors.Is(err, os.ErrNotExist) {
			delete(snap.Allocated, a)
			continue
		}
		if err != nil {
			slog.Warn("host-local: cannot read address file; treating it as taken", "ip", a, "err", err)
			continue
		}
		if o.IsZero() && len(hints) == 1 {
			out[a], torn[a] = hints[0], true
			continue
		}
		out[a] = o
		if len(hints) == 1 && hints[0] == o {
			continue
		}
		for _, h := range hints {
			if h != o {
				st.RemoveHint(store.Hint{Addr: a, Owner: h})
			}
		}
		if !o.IsZero() && !o.Legacy() && !slices.Contains(hints, o) {
			st.AddHint(store.Hint{Addr: a, Owner: o})
		}
		snap.Allocated[a] = []store.Owner{o}
	}
	return out, torn
}

// storeConf is the part of the config DEL and GC need: they must work even
// when the ranges no longer validate.
type storeConf struct {
	Name string `json:"name"`
	IPAM struct {
		DataDir string `json:"dataDir"`
	} `json:"ipam"`
}

func openStore(data []byte) (*store.Store, error) {
	var c storeConf
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, cni.NewError(cni.ErrDecodingFailure, "cannot decode the network config", err.Error())
	}
	if c.IPAM.DataDir == "" {
		c.IPAM.DataDir = DefaultDataDir
	}
	return store.Open(c.IPAM.DataDir, c.Name)
}

// Del releases every address the container ID + ifname holds (falling back
// to legacy files naming only the container ID). Releasing nothing is fine.
// While the store is sealed, the owner index finds them without a listing.
func (hostLocal) Del(_ context.Context, req *skel.Request) error {
	st, err := openStore(req.Config)
	if err != nil {
		return err
	}
	defer st.Close()
	me := store.Owner{ContainerID: req.ContainerID, IfName: req.IfName}
	if st.Trusted() {
		// The sealed index is complete: what it lists (confirmed by the
		// files) is all me holds. Finding nothing, DEL still takes the full
		// view, for files naming only the container ID.
		if mine := indexed(st, me); len(mine) > 0 {
			var errs []error
			for _, a := range mine {
				if err := st.Release(a, []store.Owner{me}); err != nil {
					errs = append(errs, err)
				}
			}
			return joinErrors("DEL could not release every address", errs)
		}
	}
	snap, err := scan(st)
	if err != nil {
		return err
	}
	owners, _ := resolve(st, snap, &me)
	var exact, legacy []netip.Addr
	for a, o := range owners {
		if o == me {
			exact = append(exact, a)
		} else if o.Legacy() && o.ContainerID == me.ContainerID {
			legacy = append(legacy, a)
		}
	}
	if len(exact) == 0 {
		exact = legacy
	}
	var errs []error
	for _, a := range exact {
		if err := st.Release(a, snap.Allocated[a]); err != nil {
			errs = append(errs, err)
		}
	}
	return joinErrors("DEL could not release every address", errs)
}

// Check verifies the container ID + ifname holds an address in every range
// set, and that the addresses prevResult lists in our ranges are its own.
func (hostLocal) Check(_ context.Context, req *skel.Request) error {
	cfg, err := LoadConfig(req.Config, req.Args)
	if err != nil {
		return err
	}
	st, err := store.Open(cfg.DataDir, cfg.Name)
	if err != nil {
		return err
	}
	defer st.Close()
	snap, err := scan(st)
	if err != nil {
		return err
	}
	me := store.Owner{ContainerID: req.ContainerID, IfName: req.IfName}
	owners, _ := resolve(st, snap, nil)
	for i, set := range cfg.Sets {
		found := false
		for a, o := range owners {
			if (o == me || o.Legacy() && o.ContainerID == me.ContainerID) && set.Contains(a) {
				found = true
				break
			}
		}
		if !found {
			return cni.Errorf(cni.ErrUnknownContainer, "host-local: container %s interface %s holds no address in range set %d (%s) of network %s",
				me.ContainerID, me.IfName, i, set, cfg.Name)
		}
	}
	if req.PrevResult != nil {
		for _, ip := range req.PrevResult.IPs {
			a, ok := netip.AddrFromSlice(ip.Address.IP)
			if !ok {
				continue
			}
			a = a.Unmap()
			inSet := false
			for _, set := range cfg.Sets {
				inSet = inSet || set.Contains(a)
			}
			if !inSet {
				continue
			}
			if o := owners[a]; o != me && !(o.Legacy() && o.ContainerID == me.ContainerID) {
				return cni.Errorf(cni.ErrUnknownContainer, "host-local: prevResult lists %s for container %s interface %s, but the data directory gives it to %q",
					a, me.ContainerID, me.IfName, o.String())
			}
		}
	}
	return nil
}

// GC releases every address whose owner is not among the valid attachments
// (cni.dev/valid-attachments, or the older cni.dev/attachments). Legacy files
// naming only a container ID stay while any valid attachment has that ID;
// empty files are released. It continues past errors and reports them all.
//
// A GC without either key (the reference cnitool sends none) releases only
// what an earlier boot left and says so on stderr: an absent list is not an
// empty one, and releasing every address because a caller forgot the key
// would be unrecoverable. An explicit empty list releases every address.
func (hostLocal) GC(_ context.Context, req *skel.Request) error {
	st, err := openStore(req.Config)
	if err != nil {
		return err
	}
	defer st.Close()
	snap, err := scan(st)
	if err != nil {
		return err
	}
	if req.NetConf.ValidAttachments == nil && req.NetConf.LegacyAttachments == nil {
		slog.Warn("host-local: GC without cni.dev/valid-attachments releases nothing of this boot; the runtime must list the attachments to keep",
			"network", req.NetConf.Name)
		return nil
	}
	valid := map[store.Owner]bool{}
	validID := map[string]bool{}
	for _, att := range req.NetConf.Attachments() {
		valid[store.Owner{ContainerID: att.ContainerID, IfName: att.IfName}] = true
		validID[att.ContainerID] = true
	}
	owners, _ := resolve(st, snap, nil)
	var errs []error
	for a, o := range owners {
		keep := valid[o] || o.Legacy() && validID[o.ContainerID]
		if keep {
			continue
		}
		slog.Info("host-local: GC releasing address", "network", req.NetConf.Name, "ip", a, "owner", o.String())
		if err := st.Release(a, snap.Allocated[a]); err != nil {
			errs = append(errs, err)
		}
	}
	if n := len(snap.Allocated) - len(owners); n > 0 {
		errs = append(errs, fmt.Errorf("%d address files could not be read (see the warnings on stderr)", n))
	}
	return joinErrors("GC could not release every stale address", errs)
}

// Status fails with code 50 when some range set has no free address left.
func (hostLocal) Status(_ context.Context, req *skel.Request) error {
	cfg, err := LoadConfig(req.Config, "")
	if err != nil {
		return err
	}
	snap, err := store.Peek(cfg.DataDir, cfg.Name)
	if err != nil {
		return err
	}
	stale := snap.FromEarlierBoot(store.CurrentBoot())
	for i, set := range cfg.Sets {
		var used uint64
		for a, hints := range snap.Allocated {
			if stale && len(hints) > 0 {
				continue // released by the next ADD
			}
			if set.Allocatable(a) {
				used++
			}
		}
		if size := set.Size(); used >= size {
			return cni.Errorf(cni.ErrPluginNotAvailable, "no IP addresses available in range set %d (%s): all %d are allocated", i, set, size)
		}
	}
	return nil
}

func joinErrors(msg string, errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return cni.NewError(cni.ErrIOFailure, msg, errors.Join(errs...).Error())
}
