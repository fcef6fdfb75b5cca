// Package ranges is IPAM address-range configuration and arithmetic, shared by
// the IPAM plugins and by plugins that compute gateways: a Range is one
// {subnet, rangeStart, rangeEnd, gateway} object as the reference host-local
// plugin reads it, a Set is a list of ranges one address is chosen from, and
// Set.From walks a set round-robin the way host-local allocates.
//
// Addresses are net/netip values. IPv4-mapped IPv6 input is unmapped, so
// "::ffff:10.0.0.1" and "10.0.0.1" are the same address.
//
// Validation errors are *cni.Error with code 7 (invalid network config) and
// name the offending key and value.
package ranges

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	"github.com/knit-cni/knit/pkg/cni"
)

// Range is one contiguous block of addresses inside a subnet. After
// Canonicalize every field is set: the defaults are gateway = network+1,
// rangeStart = network+1 and rangeEnd = broadcast-1 (IPv4) or the last
// address (IPv6). The gateway is not removed from the range; iteration skips
// it.
type Range struct {
	Subnet     netip.Prefix
	RangeStart netip.Addr
	RangeEnd   netip.Addr
	Gateway    netip.Addr
}

// rangeJSON is the wire form: every field a string, absent or "" meaning unset.
type rangeJSON struct {
	Subnet     string `json:"subnet"`
	RangeStart string `json:"rangeStart,omitempty"`
	RangeEnd   string `json:"rangeEnd,omitempty"`
	Gateway    string `json:"gateway,omitempty"`
}

func invalid(format string, args ...any) *cni.Error {
	return cni.Errorf(cni.ErrInvalidNetworkConfig, format, args...)
}

// ParseAddr parses an IP address, accepting and ignoring a "/prefix" suffix
// (as requested IPs may carry one) and unmapping IPv4-mapped IPv6.
func ParseAddr(s string) (netip.Addr, error) {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '/'); i >= 0 {
		if _, err := netip.ParsePrefix(s); err != nil {
			return netip.Addr{}, err
		}
		s = s[:i]
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, err
	}
	if a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("IP address %q must not carry a zone", s)
	}
	return a.Unmap(), nil
}

// ParsePrefix parses "addr/bits" keeping the address as written (host bits
// included), unmapping IPv4-mapped IPv6 prefixes of /96 or longer.
func ParsePrefix(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil {
		return netip.Prefix{}, err
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96), nil
	}
	return p, nil
}

// UnmarshalJSON reads the reference's range object. Each address must parse;
// Canonicalize checks how they relate.
func (r *Range) UnmarshalJSON(data []byte) error {
	var j rangeJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return invalid("invalid range %s: %v", data, err)
	}
	var out Range
	if j.Subnet != "" {
		p, err := ParsePrefix(j.Subnet)
		if err != nil {
			return invalid(`"subnet": %q is not a CIDR like "10.1.0.0/16": %v`, j.Subnet, err)
		}
		out.Subnet = p
	}
	for _, f := range []struct {
		key, val string
		dst      *netip.Addr
	}{
		{"rangeStart", j.RangeStart, &out.RangeStart},
		{"rangeEnd", j.RangeEnd, &out.RangeEnd},
		{"gateway", j.Gateway, &out.Gateway},
	} {
		if f.val == "" {
			continue
		}
		a, err := netip.ParseAddr(strings.TrimSpace(f.val))
		if err != nil || a.Zone() != "" {
			return invalid("%q: %q is not an IP address", f.key, f.val)
		}
		*f.dst = a.Unmap()
	}
	*r = out
	return nil
}

// MarshalJSON writes the reference's range object, omitting unset fields.
func (r Range) MarshalJSON() ([]byte, error) {
	j := rangeJSON{}
	if r.Subnet.IsValid() {
		j.Subnet = r.Subnet.String()
	}
	if r.RangeStart.IsValid() {
		j.RangeStart = r.RangeStart.String()
	}
	if r.RangeEnd.IsValid() {
		j.RangeEnd = r.RangeEnd.String()
	}
	if r.Gateway.IsValid() {
		j.Gateway = r.Gateway.String()
	}
	return json.Marshal(j)
}

// Canonicalize validates the range and fills in the defaults. The subnet must
// be set, have no host bits, and leave room for at least two addresses (at
// most /30 or /126); rangeStart and rangeEnd must lie in the subnet in order;
// every address must be of the subnet's family.
func (r *Range) Canonicalize() error {
	if !r.Subnet.IsValid() {
		return invalid(`"subnet" is missing: every range needs one, like "10.1.0.0/16"`)
	}
	bits := r.Subnet.Addr().BitLen()
	if r.Subnet.Bits() > bits-2 {
		return invalid(`"subnet": %s is too small to allocate from: use a prefix of /%d or shorter`, r.Subnet, bits-2)
	}
	if m := r.Subnet.Masked(); m != r.Subnet {
		return invalid(`"subnet": %s has host bits set: for a /%d the network address is %s`, r.Subnet, r.Subnet.Bits(), m)
	}
	family := func(key string, a netip.Addr) error {
		if a.Is4() != r.Subnet.Addr().Is4() {
			return invalid("%q: %s is not of the same IP family as subnet %s", key, a, r.Subnet)
		}
		return nil
	}
	network := r.Subnet.Addr()
	if r.Gateway.IsValid() {
		if err := family("gateway", r.Gateway); err != nil {
			return err
		}
	} else {
		r.Gateway = network.Next()
	}
	if r.RangeStart.IsValid() {
		if err := family("rangeStart", r.RangeStart); err != nil {
			return err
		}
		if !r.Subnet.Contains(r.RangeStart) {
			return invalid(`"rangeStart": %s is not in subnet %s`, r.RangeStart, r.Subnet)
		}
	} else {
		r.RangeStart = network.Next()
	}
	if r.RangeEnd.IsValid() {
		if err := family("rangeEnd", r.RangeEnd); err != nil {
			return err
		}
		if !r.Subnet.Contains(r.RangeEnd) {
			return invalid(`"rangeEnd": %s is not in subnet %s`, r.RangeEnd, r.Subnet)
		}
		if r.RangeEnd.Less(r.RangeStart) {
			return invalid(`"rangeEnd": %s is before rangeStart %s`, r.RangeEnd, r.RangeStart)
		}
	} else {
		r.RangeEnd = LastAddr(r.Subnet)
		if r.Subnet.Addr().Is4() {
			r.RangeEnd = r.RangeEnd.Prev()
		}
		if r.RangeEnd.Less(r.RangeStart) {
			return invalid(`"rangeStart": %s leaves no addresses before the end of subnet %s`, r.RangeStart, r.Subnet)
		}
	}
	return nil
}

// Contains reports whether a lies between RangeStart and RangeEnd inclusive
// (the gateway counts as contained). The range must be canonical.
func (r *Range) Contains(a netip.Addr) bool {
	a = a.Unmap()
	return r.Subnet.Contains(a) && !a.Less(r.RangeStart) && !r.RangeEnd.Less(a)
}

// Overlaps reports whether two canonical ranges share an address.
func (r *Range) Overlaps(o *Range) bool {
	if r.Subnet.Addr().Is4() != o.Subnet.Addr().Is4() {
		return false
	}
	return !r.RangeEnd.Less(o.RangeStart) && !o.RangeEnd.Less(r.RangeStart)
}

// Prefix returns a with the subnet's prefix length: the address as an
// interface would carry it.
func (r *Range) Prefix(a netip.Addr) netip.Prefix {
	return netip.PrefixFrom(a, r.Subnet.Bits())
}

// Size is the number of addresses from RangeStart to RangeEnd inclusive,
// saturating at the largest uint64.
func (r *Range) Size() uint64 {
	return Distance(r.RangeStart, r.RangeEnd) + 1
}

// String is "start-end", the form error messages use.
func (r *Range) String() string {
	return r.RangeStart.String() + "-" + r.RangeEnd.String()
}

// LastAddr is the highest address of p (the broadcast address for IPv4).
func LastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	bits := p.Bits()
	for i := range b {
		for bit := 0; bit < 8; bit++ {
			if i*8+bit >= bits {
				b[i] |= 0x80 >> bit
			}
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// Distance returns b-a for a <= b of the same family, saturating at the
// largest uint64 minus one (so Distance+1 never overflows).
func Distance(a, b netip.Addr) uint64 {
	x, y := a.As16(), b.As16()
	var hi, lo uint64
	for i := 0; i < 8; i++ {
		hi = hi<<8 | uint64(y[i])
		lo = lo<<8 | uint64(y[i+8])
	}
	var ahi, alo uint64
	for i := 0; i < 8; i++ {
		ahi = ahi<<8 | uint64(x[i])
		alo = alo<<8 | uint64(x[i+8])
	}
	borrow := uint64(0)
	if lo < alo {
		borrow = 1
	}
	dlo := lo - alo
	dhi := hi - ahi - borrow
	const limit = ^uint64(0) - 1
	if dhi != 0 || dlo > limit {
		return limit
	}
	return dlo
}
