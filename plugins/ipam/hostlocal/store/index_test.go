package store

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSealLifecycle(t *testing.T) {
	data := t.TempDir()
	dir := filepath.Join(data, "net")
	state := filepath.Join(data, HintDir, "net", StateFile)
	open := func() *Store {
		t.Helper()
		s, err := Open(data, "net")
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open()
	if s.Trusted() {
		t.Fatal("a new directory is trusted before any seal")
	}
	s.Reindex(nil)
	if ok, err := s.Reserve(netip.MustParseAddr("10.0.0.2"), Owner{"a", "eth0"}, 0); !ok || err != nil {
		t.Fatalf("Reserve = %v, %v", ok, err)
	}
	s.Close()
	s = open()
	if !s.Trusted() {
		b, _ := os.ReadFile(state)
		t.Fatalf("not trusted after a sealed operation; state %q", b)
	}
	if got := s.Indexed(Owner{"a", "eth0"}); len(got) != 1 || got[0] != netip.MustParseAddr("10.0.0.2") {
		t.Fatalf("Indexed = %v", got)
	}
	s.Close() // no change: the seal stays

	breaks := map[string]func(){
		// A knit process killed after its first change.
		"dirty": func() { os.WriteFile(state, []byte(dirtyState), 0o644) },
		// Another implementation's ADD in the same clock tick: the
		// directory's times unchanged, last_reserved_ip rewritten.
		"last_reserved_ip rewritten in place": func() {
			os.WriteFile(filepath.Join(dir, LastReservedPrefix+"0"), []byte("10.0.0.9"), 0o644)
		},
		"a file created": func() { os.WriteFile(filepath.Join(dir, "10.0.0.7"), []byte("x\r\neth0"), 0o644) },
		"another boot": func() {
			b, _ := os.ReadFile(state)
			os.WriteFile(state, []byte(strings.Replace(string(b), "boot=", "boot=old-", 1)), 0o644)
		},
	}
	for name, change := range breaks {
		// Re-seal (a full view, as the plugin's slow path), then break.
		s = open()
		if _, err := s.Scan(); err != nil {
			t.Fatal(err)
		}
		s.Reindex(map[netip.Addr]Owner{netip.MustParseAddr("10.0.0.2"): {"a", "eth0"}})
		s.Close()
		if s = open(); !s.Trusted() {
			t.Fatalf("%s: not trusted after Reindex", name)
		}
		s.Close()
		change()
		if s = open(); s.Trusted() {
			t.Errorf("%s: still trusted", name)
		}
		s.Close()
		os.Remove(filepath.Join(dir, "10.0.0.7"))
		os.WriteFile(filepath.Join(dir, LastReservedPrefix+"0"), []byte("10.0.0.2"), 0o644)
	}
}

func TestSealParse(t *testing.T) {
	z := seal{boot: "b", ino: 7, mtime: 11, ctime: 12, lastRx: map[int]string{1: "fd00::1", 0: "10.0.0.1"}}
	got, ok := parseSeal(z.String())
	if !ok || got.String() != z.String() {
		t.Fatalf("round trip %q -> %v %v", z.String(), got, ok)
	}
	for _, bad := range []string{"", dirtyState, "knit-host-local-seal/1 boot=b", "knit-host-local-seal/1 boot=b ino=x mtime=1 ctime=2", "other boot=b ino=1 mtime=1 ctime=2"} {
		if _, ok := parseSeal(bad); ok {
			t.Errorf("parseSeal(%q) accepted", bad)
		}
	}
}
