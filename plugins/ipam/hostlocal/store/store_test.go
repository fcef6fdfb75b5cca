package store

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/knit-cni/knit/pkg/cni"
)

func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

// hintFiles lists a hint directory's hints, leaving out the owner index and
// the seal (index.go).
func hintFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for _, n := range names(t, dir) {
		if n != OwnersDir && n != StateFile {
			out = append(out, n)
		}
	}
	return out
}

func TestReserveLayout(t *testing.T) {
	data := t.TempDir()
	s, err := Open(data, "net")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	me := Owner{"cid", "eth0"}
	a4, a6 := netip.MustParseAddr("10.0.0.7"), netip.MustParseAddr("2001:db8::7")
	for i, a := range []netip.Addr{a4, a6} {
		ok, err := s.Reserve(a, me, i)
		if !ok || err != nil {
			t.Fatalf("Reserve(%s) = %v, %v", a, ok, err)
		}
	}
	if ok, err := s.Reserve(a4, Owner{"other", "eth0"}, 0); ok || err != nil {
		t.Fatalf("second Reserve = %v, %v; want false, nil", ok, err)
	}
	dir := filepath.Join(data, "net")
	want := map[string]string{"10.0.0.7": "cid\r\neth0", "2001:db8::7": "cid\r\neth0",
		"last_reserved_ip.0": "10.0.0.7", "last_reserved_ip.1": "2001:db8::7", "lock": ""}
	for n, w := range want {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil || string(b) != w {
			t.Errorf("%s = %q, %v; want %q", n, b, err, w)
		}
	}
	if got := names(t, dir); len(got) != len(want) {
		t.Errorf("dir holds %v", got)
	}
	if got := hintFiles(t, filepath.Join(data, HintDir, "net")); !reflect.DeepEqual(got, []string{"10.0.0.7~cid~eth0", "2001:db8::7~cid~eth0"}) {
		t.Errorf("hints %v", got)
	}
	if target, err := os.Readlink(filepath.Join(data, HintDir, "net", OwnersDir, "cid~eth0")); err != nil || target != "10.0.0.7,2001:db8::7" {
		t.Errorf("owner index entry = %q, %v", target, err)
	}
	// One inode per allocation: the hint is the address file's second name.
	fi, err1 := os.Stat(filepath.Join(dir, "10.0.0.7"))
	hi, err2 := os.Stat(filepath.Join(data, HintDir, "net", "10.0.0.7~cid~eth0"))
	if err1 != nil || err2 != nil || !os.SameFile(fi, hi) || fi.Mode().Perm() != 0o644 {
		t.Errorf("address file and hint: %v %v, same file %v, mode %v", err1, err2, err1 == nil && err2 == nil && os.SameFile(fi, hi), fi.Mode())
	}
	// A crash between the hint and the link leaves a hint with content and
	// no address file: the next scan drops it, and the address is free.
	stale := filepath.Join(data, HintDir, "net", "10.0.0.9~dead~eth0")
	if err := os.WriteFile(stale, []byte("dead\r\neth0"), 0o644); err != nil {
		t.Fatal(err)
	}
	snap, err := s.Scan()
	if err != nil {
		t.Fatal(err)
	}
	if _, taken := snap.Allocated[netip.MustParseAddr("10.0.0.9")]; taken || len(snap.StaleHints) != 1 {
		t.Errorf("after a crash before the link: allocated %v, stale hints %v", snap.Allocated, snap.StaleHints)
	}
	if last, ok := s.LastReserved(1); !ok || last != a6 {
		t.Errorf("LastReserved(1) = %v %v", last, ok)
	}
	if _, ok := s.LastReserved(5); ok {
		t.Error("LastReserved of an unused set")
	}
}

func TestScanAndRelease(t *testing.T) {
	data := t.TempDir()
	dir := filepath.Join(data, "net")
	hints := filepath.Join(data, HintDir, "net")
	for _, d := range []string{dir, hints, filepath.Join(dir, "subdir")} {
		os.MkdirAll(d, 0o755)
	}
	for n, c := range map[string]string{
		"10.0.0.2": "a\r\neth0", "10.0.0.3": "b\r\neth0", "10.0.0.4": "legacy", "fd00::5": "",
		"last_reserved_ip.0": "garbage", "lock": "", "010.0.0.9": "x", "fd00:0::6": "x", "notes.txt": "x",
	} {
		os.WriteFile(filepath.Join(dir, n), []byte(c), 0o644)
	}
	for _, n := range []string{"10.0.0.2~a~eth0", "10.0.0.9~gone~eth0", "junk", "10.0.0.3~b~eth0", "10.0.0.3~x~eth1"} {
		os.WriteFile(filepath.Join(hints, n), nil, 0o644)
	}
	s, err := Open(data, "net")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	snap, err := s.Scan()
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddr
	want := map[netip.Addr][]Owner{
		a("10.0.0.2"): {{"a", "eth0"}},
		a("10.0.0.3"): {{"b", "eth0"}, {"x", "eth1"}},
		a("10.0.0.4"): nil,
		a("fd00::5"):  nil,
	}
	for _, o := range snap.Allocated {
		sort.Slice(o, func(i, j int) bool { return o[i].ContainerID < o[j].ContainerID })
	}
	if !reflect.DeepEqual(snap.Allocated, want) {
		t.Errorf("Allocated = %v", snap.Allocated)
	}
	if len(snap.StaleHints) != 1 || snap.StaleHints[0].Owner.ContainerID != "gone" {
		t.Errorf("StaleHints = %v", snap.StaleHints)
	}
	if _, ok := s.LastReserved(0); ok {
		t.Error("garbage last_reserved_ip parsed")
	}
	for ip, w := range map[string]Owner{"10.0.0.2": {"a", "eth0"}, "10.0.0.4": {"legacy", ""}, "fd00::5": {}} {
		o, err := s.ReadOwner(a(ip))
		if err != nil || o != w {
			t.Errorf("ReadOwner(%s) = %v, %v", ip, o, err)
		}
	}
	if err := s.Release(a("10.0.0.3"), snap.Allocated[a("10.0.0.3")]); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(a("10.0.0.3"), nil); err != nil {
		t.Fatalf("second release: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "10.0.0.3")); !os.IsNotExist(err) {
		t.Error("file not removed")
	}
	if got := hintFiles(t, hints); !reflect.DeepEqual(got, []string{"10.0.0.2~a~eth0", "10.0.0.9~gone~eth0", "junk"}) {
		t.Errorf("hints after release: %v", got)
	}
}

func TestParseOwner(t *testing.T) {
	for in, want := range map[string]Owner{
		"c\r\neth0":      {"c", "eth0"},
		"  c\r\neth0\n ": {"c", "eth0"},
		"c\neth0":        {"c", "eth0"},
		"c":              {"c", ""},
		"c\n":            {"c", ""},
		" \n\t":          {},
	} {
		if got := ParseOwner([]byte(in)); got != want {
			t.Errorf("ParseOwner(%q) = %+v, want %+v", in, got, want)
		}
	}
	if (Owner{"c", "eth0"}).Format() != "c\r\neth0" {
		t.Error("Format")
	}
}

func TestLockExcludes(t *testing.T) {
	data := t.TempDir()
	s, err := Open(data, "net")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *Store)
	go func() {
		s2, err := Open(data, "net")
		if err != nil {
			t.Error(err)
		}
		got <- s2
	}()
	select {
	case <-got:
		t.Fatal("second Open did not wait for the lock")
	case <-time.After(200 * time.Millisecond):
	}
	s.Close()
	select {
	case s2 := <-got:
		s2.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("second Open never got the lock")
	}
	// Other networks are independent.
	s3, err := Open(data, "other")
	if err != nil {
		t.Fatal(err)
	}
	s3.Close()
}

func TestOpenRejectsBadNames(t *testing.T) {
	for _, n := range []string{"", ".", "..", "a/b", "../x"} {
		if _, err := Open(t.TempDir(), n); cni.Code(err) != cni.ErrInvalidNetworkConfig {
			t.Errorf("Open(%q): %v", n, err)
		}
	}
	snap, err := Peek(t.TempDir(), "missing")
	if err != nil || len(snap.Allocated) != 0 {
		t.Errorf("Peek of a missing network: %v, %v", snap, err)
	}
}

func TestWithoutHintDir(t *testing.T) {
	data := t.TempDir()
	// A file where the hint directory would go: hints are disabled, not fatal.
	os.WriteFile(filepath.Join(data, HintDir), nil, 0o644)
	s, err := Open(data, "net")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a := netip.MustParseAddr("10.0.0.2")
	if ok, err := s.Reserve(a, Owner{"c", "eth0"}, 0); !ok || err != nil {
		t.Fatalf("Reserve: %v %v", ok, err)
	}
	snap, err := s.Scan()
	if err != nil || len(snap.Allocated) != 1 || snap.Allocated[a] != nil {
		t.Fatalf("Scan: %v %v", snap, err)
	}
	if err := s.Release(a, []Owner{{"c", "eth0"}}); err != nil {
		t.Fatal(err)
	}
}
