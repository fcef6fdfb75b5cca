package bandwidth

import (
	"errors"
	"fmt"
	"math"

	"github.com/knit-cni/knit/internal/link"
	"github.com/vishvananda/netlink"
)

// latencyUsec is how long a packet may wait in the TBF queue; the reference
// plugin fixes it at 25 ms and derives the queue limit from it.
const latencyUsec = 25_000

// tbfParams are the kernel's TBF parameters for one rate and burst.
type tbfParams struct {
	Rate   uint64 // bytes per second
	Buffer uint32 // bucket size, in psched ticks (time to send the burst at Rate)
	Limit  uint32 // queue limit in bytes: burst plus latencyUsec worth of traffic
}

// deriveTBF turns a rate in bits/s and a burst in bits into TBF parameters,
// the same arithmetic as the reference plugin (and tc) so existing configs
// shape the same way. It fails when a value does not fit the kernel's
// 32-bit fields.
func deriveTBF(rateBits, burstBits uint64) (tbfParams, error) {
	rate := rateBits / 8
	burst := burstBits / 8
	if rate == 0 {
		return tbfParams{}, errors.New("rate is below one byte per second")
	}
	usec := float64(burst) * 1e6 / float64(rate)
	ticks := usec * netlink.TickInUsec()
	if usec >= math.MaxUint32 || ticks >= math.MaxUint32 {
		return tbfParams{}, fmt.Errorf("a %d-byte burst takes %.0f s to send at %d bytes/s, too long for the kernel: raise the rate or lower the burst",
			burst, usec/1e6, rate)
	}
	limit := float64(rate)*latencyUsec/1e6 + float64(burst)
	if limit >= math.MaxUint32 {
		return tbfParams{}, fmt.Errorf("the queue limit (%.0f bytes) does not fit in 32 bits: lower the rate or the burst", limit)
	}
	return tbfParams{
		Rate:   rate,
		Buffer: uint32(float64(uint32(usec)) * netlink.TickInUsec()),
		Limit:  uint32(float64(rate)*latencyUsec/1e6) + uint32(burst),
	}, nil
}

// rootHandle is the handle of the TBF root qdisc (1:), as the reference
// plugin uses.
var rootHandle = netlink.MakeHandle(1, 0)

// setTBF makes a TBF with p the root qdisc of l, replacing what was there
// (a fresh veth or ifb has the default noqueue), so a repeated ADD is
// harmless.
func setTBF(ns *link.Namespace, l netlink.Link, p tbfParams) error {
	q := &netlink.Tbf{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: l.Attrs().Index, Handle: rootHandle, Parent: netlink.HANDLE_ROOT},
		Rate:       p.Rate,
		Limit:      p.Limit,
		Buffer:     p.Buffer,
	}
	if err := ns.Handle.QdiscReplace(q); err != nil {
		return fmt.Errorf("adding a tbf root qdisc (rate %d bytes/s) to %s: %w", p.Rate, l.Attrs().Name, err)
	}
	return nil
}

// rootTBF returns l's root qdisc if it is the TBF this plugin puts there,
// or nil.
func rootTBF(ns *link.Namespace, l netlink.Link) (*netlink.Tbf, error) {
	qs, err := link.Dump(func() ([]netlink.Qdisc, error) { return ns.Handle.QdiscList(l) })
	if err != nil {
		return nil, fmt.Errorf("listing qdiscs of %s: %w", l.Attrs().Name, err)
	}
	for _, q := range qs {
		a := q.Attrs()
		if a.LinkIndex != l.Attrs().Index || a.Parent != netlink.HANDLE_ROOT {
			continue
		}
		if t, ok := q.(*netlink.Tbf); ok && a.Handle == rootHandle {
			return t, nil
		}
	}
	return nil, nil
}

// checkTBF verifies l's root qdisc is a TBF with exactly p.
func checkTBF(ns *link.Namespace, l netlink.Link, p tbfParams) error {
	t, err := rootTBF(ns, l)
	if err != nil {
		return err
	}
	if t == nil {
		return fmt.Errorf("%s has no tbf root qdisc (handle 1:)", l.Attrs().Name)
	}
	if t.Rate != p.Rate || t.Limit != p.Limit || t.Buffer != p.Buffer {
		return fmt.Errorf("tbf on %s has rate %d B/s, limit %d B, buffer %d ticks; the config gives rate %d B/s, limit %d B, buffer %d ticks",
			l.Attrs().Name, t.Rate, t.Limit, t.Buffer, p.Rate, p.Limit, p.Buffer)
	}
	return nil
}

// delTBF removes l's root TBF if it is there.
func delTBF(ns *link.Namespace, l netlink.Link) error {
	t, err := rootTBF(ns, l)
	if err != nil || t == nil {
		return err
	}
	if err := ns.Handle.QdiscDel(t); err != nil && !link.IsNotFound(err) {
		return fmt.Errorf("removing the tbf root qdisc of %s: %w", l.Attrs().Name, err)
	}
	return nil
}
