package ranges

import (
	"iter"
	"net/netip"
	"strings"
)

// Set is a range set: the ranges one address is allocated from. All ranges
// of a set are of one IP family and do not overlap.
type Set []Range

// Canonicalize canonicalizes every range and checks the set is non-empty,
// single-family and free of overlaps. Errors name the range by index.
func (s Set) Canonicalize() error {
	if len(s) == 0 {
		return invalid("empty range set: give at least one range with a \"subnet\"")
	}
	for i := range s {
		if err := s[i].Canonicalize(); err != nil {
			e := invalid("range %d: %s", i, err.Error())
			return e
		}
	}
	v4 := s[0].Subnet.Addr().Is4()
	for i := range s {
		if s[i].Subnet.Addr().Is4() != v4 {
			return invalid("range %d (%s) mixes address families with range 0 (%s): put IPv4 and IPv6 ranges in separate range sets",
				i, s[i].Subnet, s[0].Subnet)
		}
		for j := i + 1; j < len(s); j++ {
			if s[i].Overlaps(&s[j]) {
				return invalid("range %d (%s) overlaps with range %d (%s)", i, s[i].String(), j, s[j].String())
			}
		}
	}
	return nil
}

// Is4 reports whether the (canonical, non-empty) set is IPv4.
func (s Set) Is4() bool { return len(s) > 0 && s[0].Subnet.Addr().Is4() }

// Overlaps reports whether any range of s overlaps any range of o.
func (s Set) Overlaps(o Set) bool {
	for i := range s {
		for j := range o {
			if s[i].Overlaps(&o[j]) {
				return true
			}
		}
	}
	return false
}

// Contains reports whether some range of the set contains a.
func (s Set) Contains(a netip.Addr) bool {
	return s.RangeFor(a) >= 0
}

// RangeFor returns the index of the range containing a, or -1.
func (s Set) RangeFor(a netip.Addr) int {
	for i := range s {
		if s[i].Contains(a) {
			return i
		}
	}
	return -1
}

// String lists the ranges as "start-end,start-end".
func (s Set) String() string {
	parts := make([]string, len(s))
	for i := range s {
		parts[i] = s[i].String()
	}
	return strings.Join(parts, ",")
}

// Size is the number of allocatable addresses: every address of every range
// except each range's gateway when the range holds it. It saturates at the
// largest uint64.
func (s Set) Size() uint64 {
	var n uint64
	for i := range s {
		sz := s[i].Size()
		if s[i].Contains(s[i].Gateway) {
			sz--
		}
		if n+sz < n {
			return ^uint64(0)
		}
		n += sz
	}
	return n
}

// Allocatable reports whether a is an address the set hands out: inside a
// range and not that range's gateway.
func (s Set) Allocatable(a netip.Addr) bool {
	i := s.RangeFor(a)
	return i >= 0 && s[i].Gateway != a.Unmap()
}

// From yields every allocatable address of the set once, in host-local's
// round-robin order: starting just after last when some range contains last,
// otherwise at the first range's start; running to each range's end and on
// to the next range's start, wrapping around the set; skipping gateways.
// Each address comes with the index of its range.
func (s Set) From(last netip.Addr) iter.Seq2[int, netip.Addr] {
	return func(yield func(int, netip.Addr) bool) {
		if len(s) == 0 {
			return
		}
		first, start := 0, s[0].RangeStart
		wrapTail := false // the part of range `first` before `start` comes last
		if i := s.RangeFor(last); i >= 0 {
			first = i
			last = last.Unmap()
			if last == s[i].RangeEnd {
				first = (i + 1) % len(s)
				start = s[first].RangeStart
			} else {
				start = last.Next()
				wrapTail = true
			}
		}
		walk := func(idx int, from, to netip.Addr) bool {
			r := &s[idx]
			for a := from; ; a = a.Next() {
				if a != r.Gateway && !yield(idx, a) {
					return false
				}
				if a == to {
					return true
				}
			}
		}
		for k := 0; k < len(s); k++ {
			idx := (first + k) % len(s)
			from := s[idx].RangeStart
			if k == 0 {
				from = start
			}
			if !walk(idx, from, s[idx].RangeEnd) {
				return
			}
		}
		if wrapTail && start != s[first].RangeStart {
			walk(first, s[first].RangeStart, start.Prev())
		}
	}
}
