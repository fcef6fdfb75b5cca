package hostlocal

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/knit-cni/knit/plugins/ipam/hostlocal/store"
)

// Allocations knit made in an earlier boot are released by the first
// operation of this boot; the reference's (unhinted) ones stay.
func TestEarlierBootReclaimed(t *testing.T) {
	if store.CurrentBoot() == "" {
		t.Skip("no boot id on this kernel")
	}
	dir := t.TempDir()
	conf := netConf("1.1.0", dir, `"ranges":[[{"subnet":"10.46.0.0/29"}]]`) // .2-.6 allocatable
	for _, cid := range []string{"old1", "old2", "old3", "old4"} {
		mustOK(t, run(t, call{cmd: "ADD", cid: cid, conf: conf}))
	}
	net := filepath.Join(dir, "testnet")
	writeFile(t, filepath.Join(net, "10.46.0.6"), "refctr\r\neth0") // the reference's: no hint
	mustFail(t, run(t, call{cmd: "STATUS", conf: conf}), 50, "all 5 are allocated")

	// Pretend the allocations were made before a reboot.
	bootFile := filepath.Join(dir, ".knit", "testnet", store.BootFile)
	writeFile(t, bootFile, "00000000-0000-0000-0000-000000000000\n")
	mustOK(t, run(t, call{cmd: "STATUS", conf: conf})) // counts them free already
	got := mustOK(t, run(t, call{cmd: "ADD", cid: "new", conf: conf})).addrs()
	if len(got) != 1 {
		t.Fatalf("ADD after reboot: %v", got)
	}
	want := map[string]string{"10.46.0.6": "refctr\r\neth0", strings.TrimSuffix(got[0], "/29"): "new\r\neth0"}
	if a := allocations(t, dir); !reflect.DeepEqual(a, want) {
		t.Fatalf("after the first ADD of the new boot: %v, want %v", a, want)
	}
	// The reference's file is now hinted too: seen in this boot, so a later
	// boot knows it is older.
	if h := hintNames(t, dir); !reflect.DeepEqual(h, []string{strings.TrimSuffix(got[0], "/29") + "~new~eth0", "10.46.0.6~refctr~eth0"}) {
		t.Fatalf("hints: %v", h)
	}
	if b, _ := os.ReadFile(bootFile); strings.TrimSpace(string(b)) != store.CurrentBoot() {
		t.Fatalf("boot_id not updated: %q", b)
	}
	// Same boot: nothing more is reclaimed.
	mustOK(t, run(t, call{cmd: "ADD", cid: "new2", conf: conf}))
	if a := allocations(t, dir); len(a) != 3 {
		t.Fatalf("second ADD of the same boot: %v", a)
	}
	// The reference still reads the directory.
	needReference(t)
	mustOK(t, runBinary(t, referencePlugin, call{cmd: "CHECK", cid: "new", conf: netConf("1.0.0", dir, `"ranges":[[{"subnet":"10.46.0.0/29"}]]`)}))
}

// A directory without a boot id (written by an older knit or only by the
// reference) is not treated as an earlier boot.
func TestNoBootRecordReclaimsNothing(t *testing.T) {
	dir := t.TempDir()
	conf := netConf("1.1.0", dir, `"ranges":[[{"subnet":"10.47.0.0/24"}]]`)
	mustOK(t, run(t, call{cmd: "ADD", cid: "a", conf: conf}))
	os.Remove(filepath.Join(dir, ".knit", "testnet", store.BootFile))
	mustOK(t, run(t, call{cmd: "ADD", cid: "b", conf: conf}))
	if a := allocations(t, dir); len(a) != 2 {
		t.Fatalf("allocations: %v", a)
	}
}

// A torn (empty) address file with a hint is its writer's: its DEL releases
// it and its re-ADD replaces it with a whole allocation.
func TestTornFileWithHint(t *testing.T) {
	dir := t.TempDir()
	conf := netConf("1.1.0", dir, `"ranges":[[{"subnet":"10.48.0.0/24"}]]`)
	net := filepath.Join(dir, "testnet")
	writeFile(t, filepath.Join(net, "10.48.0.2"), "")
	writeFile(t, filepath.Join(dir, ".knit", "testnet", "10.48.0.2~c1~eth0"), "")
	writeFile(t, filepath.Join(net, "10.48.0.3"), "")
	writeFile(t, filepath.Join(dir, ".knit", "testnet", "10.48.0.3~c2~eth0"), "")
	writeFile(t, filepath.Join(dir, ".knit", "testnet", "tmp.123"), "c9\r\neth0")
	mustOK(t, run(t, call{cmd: "DEL", cid: "c1", conf: conf}))
	got := mustOK(t, run(t, call{cmd: "ADD", cid: "c2", conf: conf})).addrs()
	want := map[string]string{strings.TrimSuffix(got[0], "/24"): "c2\r\neth0"}
	if a := allocations(t, dir); !reflect.DeepEqual(a, want) {
		t.Fatalf("after DEL c1 and re-ADD c2: %v, want %v", a, want)
	}
	for _, n := range listDir(t, filepath.Join(dir, ".knit", "testnet")) {
		if strings.HasPrefix(n, "tmp.") {
			t.Fatalf("temporary file %s survived a locked scan", n)
		}
	}
}
