package ranges

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/knit-cni/knit/pkg/cni"
)

func mustRange(t *testing.T, js string) Range {
	t.Helper()
	var r Range
	if err := json.Unmarshal([]byte(js), &r); err != nil {
		t.Fatalf("unmarshal %s: %v", js, err)
	}
	if err := r.Canonicalize(); err != nil {
		t.Fatalf("canonicalize %s: %v", js, err)
	}
	return r
}

func addrs(t *testing.T, ss ...string) []netip.Addr {
	t.Helper()
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func TestDefaults(t *testing.T) {
	for _, tc := range []struct {
		in             string
		start, end, gw string
		size           uint64
		setSize        uint64
	}{
		{`{"subnet":"10.0.0.0/24"}`, "10.0.0.1", "10.0.0.254", "10.0.0.1", 254, 253},
		{`{"subnet":"10.0.0.0/30"}`, "10.0.0.1", "10.0.0.2", "10.0.0.1", 2, 1},
		{`{"subnet":"fd00::/126"}`, "fd00::1", "fd00::3", "fd00::1", 3, 2},
		{`{"subnet":"fd00::/64"}`, "fd00::1", "fd00::ffff:ffff:ffff:ffff", "fd00::1", 1<<64 - 1, 1<<64 - 2},
		{`{"subnet":"10.0.0.0/24","rangeStart":"10.0.0.10","rangeEnd":"10.0.0.20","gateway":"10.0.0.254"}`, "10.0.0.10", "10.0.0.20", "10.0.0.254", 11, 11},
		{`{"subnet":"::ffff:10.0.0.0/120"}`, "10.0.0.1", "10.0.0.254", "10.0.0.1", 254, 253},
	} {
		r := mustRange(t, tc.in)
		if r.RangeStart.String() != tc.start || r.RangeEnd.String() != tc.end || r.Gateway.String() != tc.gw {
			t.Errorf("%s: got start %s end %s gw %s, want %s %s %s", tc.in, r.RangeStart, r.RangeEnd, r.Gateway, tc.start, tc.end, tc.gw)
		}
		if got := r.Size(); got != tc.size && !(tc.size == 1<<64-1 && got == 1<<64-1) {
			t.Errorf("%s: size %d, want %d", tc.in, got, tc.size)
		}
		if got := (Set{r}).Size(); got != tc.setSize {
			t.Errorf("%s: set size %d, want %d", tc.in, got, tc.setSize)
		}
	}
}

func TestValidationErrors(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // substring naming key/value
	}{
		{`{"subnet":"10.0.0.1/24"}`, `has host bits set: for a /24 the network address is 10.0.0.0`},
		{`{"subnet":"10.0.0.0/31"}`, `too small`},
		{`{"subnet":"10.0.0.0/32"}`, `too small`},
		{`{"subnet":"fd00::/127"}`, `too small`},
		{`{"subnet":"10.0.0.0/33"}`, `"subnet": "10.0.0.0/33" is not a CIDR`},
		{`{"subnet":"10.0.0.0/24","rangeStart":"10.0.1.1"}`, `"rangeStart": 10.0.1.1 is not in subnet 10.0.0.0/24`},
		{`{"subnet":"10.0.0.0/24","rangeEnd":"10.0.1.1"}`, `"rangeEnd": 10.0.1.1 is not in subnet`},
		{`{"subnet":"10.0.0.0/24","rangeStart":"10.0.0.9","rangeEnd":"10.0.0.5"}`, `"rangeEnd": 10.0.0.5 is before rangeStart 10.0.0.9`},
		{`{"subnet":"10.0.0.0/24","gateway":"fd00::1"}`, `"gateway": fd00::1 is not of the same IP family`},
		{`{"subnet":"10.0.0.0/24","gateway":"nope"}`, `"gateway": "nope" is not an IP address`},
		{`{"rangeStart":"10.0.0.1"}`, `"subnet" is missing`},
	} {
		var r Range
		err := json.Unmarshal([]byte(tc.in), &r)
		if err == nil {
			err = r.Canonicalize()
		}
		if err == nil {
			t.Errorf("%s: no error", tc.in)
			continue
		}
		if cni.Code(err) != cni.ErrInvalidNetworkConfig {
			t.Errorf("%s: code %d, want 7 (%v)", tc.in, cni.Code(err), err)
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q does not contain %q", tc.in, err, tc.want)
		}
	}
}

func TestSetValidation(t *testing.T) {
	var s Set
	if err := json.Unmarshal([]byte(`[{"subnet":"10.0.0.0/24"},{"subnet":"10.0.0.128/25"}]`), &s); err != nil {
		t.Fatal(err)
	}
	if err := s.Canonicalize(); err == nil || !strings.Contains(err.Error(), "range 0 (10.0.0.1-10.0.0.254) overlaps with range 1") {
		t.Errorf("overlap: %v", err)
	}
	s = nil
	json.Unmarshal([]byte(`[{"subnet":"10.0.0.0/24"},{"subnet":"fd00::/64"}]`), &s)
	if err := s.Canonicalize(); err == nil || !strings.Contains(err.Error(), "mixes address families") {
		t.Errorf("mixed: %v", err)
	}
	if err := (Set{}).Canonicalize(); err == nil || cni.Code(err) != cni.ErrInvalidNetworkConfig {
		t.Errorf("empty: %v", err)
	}
	// Adjacent ranges in one subnet do not overlap.
	s = nil
	json.Unmarshal([]byte(`[{"subnet":"10.0.0.0/24","rangeEnd":"10.0.0.100"},{"subnet":"10.0.0.0/24","rangeStart":"10.0.0.101"}]`), &s)
	if err := s.Canonicalize(); err != nil {
		t.Errorf("adjacent: %v", err)
	}
}

func collect(s Set, last netip.Addr) []netip.Addr {
	var out []netip.Addr
	for _, a := range s.From(last) {
		out = append(out, a)
	}
	return out
}

func equal(a, b []netip.Addr) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestIteration(t *testing.T) {
	v4 := Set{mustRange(t, `{"subnet":"10.0.0.0/29"}`)} // .1 gw, .1-.6
	v6 := Set{mustRange(t, `{"subnet":"fd00::/126"}`)}  // ::1 gw, ::1-::3
	slash30 := Set{mustRange(t, `{"subnet":"10.0.0.0/30"}`)}
	two := Set{
		mustRange(t, `{"subnet":"10.0.0.0/24","rangeStart":"10.0.0.10","rangeEnd":"10.0.0.12"}`),
		mustRange(t, `{"subnet":"10.0.1.0/24","rangeStart":"10.0.1.1","rangeEnd":"10.0.1.3","gateway":"10.0.1.2"}`),
	}
	none := netip.Addr{}
	for _, tc := range []struct {
		name string
		set  Set
		last netip.Addr
		want []string
	}{
		{"v4 fresh", v4, none, []string{"10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"}},
		{"v4 after .4", v4, netip.MustParseAddr("10.0.0.4"), []string{"10.0.0.5", "10.0.0.6", "10.0.0.2", "10.0.0.3", "10.0.0.4"}},
		{"v4 after end wraps", v4, netip.MustParseAddr("10.0.0.6"), []string{"10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"}},
		{"v4 last outside set", v4, netip.MustParseAddr("192.168.0.1"), []string{"10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"}},
		{"/30", slash30, none, []string{"10.0.0.2"}},
		{"/30 after .2", slash30, netip.MustParseAddr("10.0.0.2"), []string{"10.0.0.2"}},
		{"/126", v6, none, []string{"fd00::2", "fd00::3"}},
		{"/126 after ::2", v6, netip.MustParseAddr("fd00::2"), []string{"fd00::3", "fd00::2"}},
		{"two ranges", two, none, []string{"10.0.0.10", "10.0.0.11", "10.0.0.12", "10.0.1.1", "10.0.1.3"}},
		{"two ranges from middle of second", two, netip.MustParseAddr("10.0.1.1"), []string{"10.0.1.3", "10.0.0.10", "10.0.0.11", "10.0.0.12", "10.0.1.1"}},
		{"two ranges from end of first", two, netip.MustParseAddr("10.0.0.12"), []string{"10.0.1.1", "10.0.1.3", "10.0.0.10", "10.0.0.11", "10.0.0.12"}},
	} {
		got := collect(tc.set, tc.last)
		if !equal(got, addrs(t, tc.want...)) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
		if uint64(len(got)) != tc.set.Size() {
			t.Errorf("%s: yielded %d addresses, Size says %d", tc.name, len(got), tc.set.Size())
		}
	}
	// Early stop works and v6 /64 is lazily iterated.
	big := Set{mustRange(t, `{"subnet":"fd00::/64"}`)}
	n := 0
	for range big.From(netip.MustParseAddr("fd00::ffff:ffff:ffff:fffe")) {
		n++
		if n == 3 {
			break
		}
	}
	if n != 3 {
		t.Errorf("early stop: %d", n)
	}
	got := collect(Set{mustRange(t, `{"subnet":"fd00::/120","rangeStart":"fd00::fe"}`)}, netip.MustParseAddr("fd00::ff"))
	if !equal(got, addrs(t, "fd00::fe", "fd00::ff")) {
		t.Errorf("v6 wrap at subnet end: %v", got)
	}
}

func TestAllocatableAndRangeFor(t *testing.T) {
	s := Set{mustRange(t, `{"subnet":"10.0.0.0/24","rangeStart":"10.0.0.10","rangeEnd":"10.0.0.20"}`)}
	for ip, want := range map[string]bool{"10.0.0.1": false, "10.0.0.10": true, "10.0.0.20": true, "10.0.0.21": false, "fd00::1": false} {
		if got := s.Allocatable(netip.MustParseAddr(ip)); got != want {
			t.Errorf("Allocatable(%s) = %v", ip, got)
		}
	}
	s = Set{mustRange(t, `{"subnet":"10.0.0.0/24"}`)}
	if s.Allocatable(netip.MustParseAddr("10.0.0.1")) {
		t.Error("gateway is allocatable")
	}
	if !s.Contains(netip.MustParseAddr("10.0.0.1")) {
		t.Error("gateway not contained")
	}
}

func TestParseAddrAndJSON(t *testing.T) {
	for in, want := range map[string]string{"10.0.0.5": "10.0.0.5", "10.0.0.5/24": "10.0.0.5", " fd00::5/64": "fd00::5", "::ffff:10.1.1.1": "10.1.1.1"} {
		a, err := ParseAddr(in)
		if err != nil || a.String() != want {
			t.Errorf("ParseAddr(%q) = %v, %v", in, a, err)
		}
	}
	for _, bad := range []string{"", "10.0.0", "10.0.0.5/40", "fe80::1%eth0"} {
		if _, err := ParseAddr(bad); err == nil {
			t.Errorf("ParseAddr(%q) accepted", bad)
		}
	}
	r := mustRange(t, `{"subnet":"10.0.0.0/24"}`)
	b, _ := json.Marshal(r)
	if string(b) != `{"subnet":"10.0.0.0/24","rangeStart":"10.0.0.1","rangeEnd":"10.0.0.254","gateway":"10.0.0.1"}` {
		t.Errorf("marshal: %s", b)
	}
	if LastAddr(netip.MustParsePrefix("10.1.0.0/16")).String() != "10.1.255.255" {
		t.Error("LastAddr")
	}
	if Distance(netip.MustParseAddr("fd00::"), netip.MustParseAddr("fd00::1:0")) != 65536 {
		t.Error("Distance")
	}
}
