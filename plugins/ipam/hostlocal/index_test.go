package hostlocal

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/knit-cni/knit/pkg/cni"
	"github.com/knit-cni/knit/plugins/ipam/hostlocal/store"
)

// scans counts how often ADD takes the full view of the directory (the
// "scan" step) while the test runs.
func scans(t *testing.T) *int {
	t.Helper()
	n := new(int)
	prev := store.StepHook
	store.StepHook = func(step string) {
		if step == "scan" {
			*n++
		}
		if prev != nil {
			prev(step)
		}
	}
	t.Cleanup(func() { store.StepHook = prev })
	return n
}

func TestSealedAddSkipsTheScan(t *testing.T) {
	dir := t.TempDir()
	conf := netConf("1.0.0", dir, dual)
	n := scans(t)
	first := mustOK(t, run(t, call{cmd: "ADD", cid: "c1", conf: conf})).addrs()
	if *n != 1 {
		t.Fatalf("first ADD on a new directory scanned %d times, want 1", *n)
	}
	second := mustOK(t, run(t, call{cmd: "ADD", cid: "c2", conf: conf})).addrs()
	again := mustOK(t, run(t, call{cmd: "ADD", cid: "c2", conf: conf})).addrs()
	if *n != 1 {
		t.Fatalf("ADDs after the seal scanned the directory (%d scans)", *n)
	}
	if !reflect.DeepEqual(second, again) || slices.Equal(first, second) {
		t.Fatalf("c1 %v, c2 %v, c2 again %v: want c2 stable and distinct from c1", first, second, again)
	}
	if got := ownerEntries(t, dir); !reflect.DeepEqual(got, map[string]string{"c1~eth0": "10.1.0.2,fd01::2", "c2~eth0": "10.1.0.3,fd01::3"}) {
		t.Fatalf("owner index %v", got)
	}
	// DEL keeps the seal: the next ADD is still a fast one, and round robin
	// goes on past the released address.
	mustOK(t, run(t, call{cmd: "DEL", cid: "c1", conf: conf}))
	if *n != 1 {
		t.Fatalf("DEL of an indexed attachment scanned the directory (%d scans)", *n)
	}
	third := mustOK(t, run(t, call{cmd: "ADD", cid: "c3", conf: conf})).addrs()
	if *n != 1 {
		t.Fatalf("ADD after a DEL scanned the directory (%d scans)", *n)
	}
	if !reflect.DeepEqual(third, []string{"10.1.0.4/29", "fd01::4/125"}) {
		t.Fatalf("c3 got %v", third)
	}
	if got := ownerEntries(t, dir); len(got) != 2 || got["c1~eth0"] != "" {
		t.Fatalf("owner index after DEL c1: %v", got)
	}
	if got := allocations(t, dir); len(got) != 4 {
		t.Fatalf("allocations after DEL c1: %v", got)
	}
	if hints := hintNames(t, dir); len(hints) != 4 {
		t.Fatalf("hints after DEL c1: %v", hints)
	}
	// DEL of something the index does not know takes the full view (legacy
	// files may name the container ID alone) and releases nothing else.
	mustOK(t, run(t, call{cmd: "DEL", cid: "unknown", conf: conf}))
	if *n != 2 || len(allocations(t, dir)) != 4 {
		t.Fatalf("DEL of an unknown attachment: %d scans, allocations %v", *n, allocations(t, dir))
	}
}

// Another implementation's allocation, written after knit sealed the
// directory, breaks the seal: the next ADD scans, finds it, and a repeated
// ADD of its owner gets it back, also on the fast path afterwards.
func TestForeignAllocationBreaksTheSeal(t *testing.T) {
	dir := t.TempDir()
	net := filepath.Join(dir, "testnet")
	conf := netConf("1.0.0", dir, `"ranges":[[{"subnet":"10.1.0.0/29"}]]`)
	n := scans(t)
	mustOK(t, run(t, call{cmd: "ADD", cid: "c1", conf: conf}))
	// As the reference writes an allocation: the file, then last_reserved_ip.
	writeFile(t, filepath.Join(net, "10.1.0.3"), "ref\r\neth0")
	writeFile(t, filepath.Join(net, "last_reserved_ip.0"), "10.1.0.3")
	if got := mustOK(t, run(t, call{cmd: "ADD", cid: "ref", conf: conf})).addrs(); !reflect.DeepEqual(got, []string{"10.1.0.3/29"}) {
		t.Fatalf("repeated ADD of the reference's attachment got %v, want its 10.1.0.3", got)
	}
	if *n != 2 {
		t.Fatalf("%d scans, want 2 (the first ADD and the one after the foreign write)", *n)
	}
	if got := mustOK(t, run(t, call{cmd: "ADD", cid: "ref", conf: conf})).addrs(); !reflect.DeepEqual(got, []string{"10.1.0.3/29"}) || *n != 2 {
		t.Fatalf("fast repeated ADD got %v after %d scans", got, *n)
	}
	if got := mustOK(t, run(t, call{cmd: "ADD", cid: "c2", conf: conf})).addrs(); !reflect.DeepEqual(got, []string{"10.1.0.4/29"}) {
		t.Fatalf("c2 got %v", got)
	}
	// A file rewritten in place (the directory unchanged, so the seal
	// holds) makes c2's index entry stale: it is checked against the file
	// and ignored.
	if err := os.WriteFile(filepath.Join(net, "10.1.0.4"), []byte("someone\r\neth0"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := mustOK(t, run(t, call{cmd: "ADD", cid: "c2", conf: conf})).addrs(); !reflect.DeepEqual(got, []string{"10.1.0.5/29"}) || *n != 2 {
		t.Fatalf("c2 got %v after %d scans, want a new 10.1.0.5 on the fast path", got, *n)
	}
}

// When the probed range looks full, ADD takes the full view before it gives
// up, so an old empty file is reclaimed on the fast path too.
func TestFastPathFullRangeFallsBackToScan(t *testing.T) {
	dir := t.TempDir()
	conf := netConf("1.0.0", dir, `"ranges":[[{"subnet":"10.5.0.0/29"}]]`)
	var got []string
	for _, c := range []string{"a", "b", "c", "d", "e"} {
		got = append(got, mustOK(t, run(t, call{cmd: "ADD", cid: c, conf: conf})).addrs()...)
	}
	if len(got) != 5 {
		t.Fatalf("got %v", got)
	}
	n := scans(t)
	mustFail(t, run(t, call{cmd: "ADD", cid: "f", conf: conf}), cni.ErrPluginNotAvailable, "no IP addresses available")
	if *n != 1 {
		t.Fatalf("exhaustion reported after %d scans, want 1", *n)
	}
	mustOK(t, run(t, call{cmd: "DEL", cid: "c", conf: conf}))
	if a := mustOK(t, run(t, call{cmd: "ADD", cid: "f", conf: conf})).addrs(); !reflect.DeepEqual(a, []string{"10.5.0.4/29"}) {
		t.Fatalf("f got %v, want the released 10.5.0.4", a)
	}
}
