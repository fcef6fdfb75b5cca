package sysctl

import (
	"os"
	"path/filepath"
	"testing"
)

func fakeRoot(t *testing.T) string {
	t.Helper()
	old := Root
	Root = t.TempDir()
	t.Cleanup(func() { Root = old })
	dir := filepath.Join(Root, "net", "ipv4", "conf", "eth0.5")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(Root, "net", "ipv4", "ip_forward"), []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "arp_notify"), []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return Root
}

func TestGetSetWritesOnlyWhenDifferent(t *testing.T) {
	root := fakeRoot(t)
	v, err := Get("net.ipv4.ip_forward")
	if err != nil || v != "0" {
		t.Fatalf("Get = %q, %v; want 0", v, err)
	}
	wrote, err := Set("net.ipv4.ip_forward", "1")
	if err != nil || !wrote {
		t.Fatalf("Set = %v, %v; want a write", wrote, err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "net/ipv4/ip_forward")); string(b) != "1" {
		t.Fatalf("file holds %q", b)
	}
	wrote, err = Set("net/ipv4/ip_forward", "1")
	if err != nil || wrote {
		t.Fatalf("second Set = %v, %v; want no write", wrote, err)
	}
}

func TestIfaceKeyWithDots(t *testing.T) {
	fakeRoot(t)
	k := IfaceKey("ipv4", "conf", "eth0.5", "arp_notify")
	if _, err := Set(k, "1"); err != nil {
		t.Fatal(err)
	}
	if v, _ := Get(k); v != "1" {
		t.Fatalf("got %q", v)
	}
}

func TestRejectsKeysOutsideNet(t *testing.T) {
	fakeRoot(t)
	for _, k := range []string{"kernel.hostname", "net/../kernel/hostname", "net/ipv4/../../kernel/x", ""} {
		if _, err := Get(k); err == nil {
			t.Errorf("Get(%q) succeeded; want refusal", k)
		}
		if _, err := Set(k, "x"); err == nil {
			t.Errorf("Set(%q) succeeded; want refusal", k)
		}
	}
}

func TestApplyOptional(t *testing.T) {
	fakeRoot(t)
	err := Apply(Setting{Key: "net/ipv6/conf/eth0/accept_dad", Value: "0", Optional: true},
		Setting{Key: "net/ipv4/ip_forward", Value: "1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := Apply(Setting{Key: "net/ipv6/conf/eth0/accept_dad", Value: "0"}); err == nil || !IsNotExist(err) {
		t.Fatalf("Apply of a missing required key = %v; want not-exist error", err)
	}
}

func TestEnableForwarding(t *testing.T) {
	fakeRoot(t)
	if err := EnableForwarding(true, false); err != nil {
		t.Fatal(err)
	}
	if v, _ := Get("net.ipv4.ip_forward"); v != "1" {
		t.Fatalf("ip_forward = %q", v)
	}
	if err := EnableForwarding(false, true); err == nil {
		t.Fatal("want an error for the missing ipv6 key in the fake tree")
	}
}
