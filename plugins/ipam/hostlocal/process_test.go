package hostlocal

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// referencePlugin is Debian's build of the reference host-local.
const referencePlugin = "/usr/lib/cni/host-local"

func needReference(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(referencePlugin); err != nil {
		t.Skipf("reference plugin not installed (%v): apt-get install containernetworking-plugins", err)
	}
}

// The reference (up to 1.0.0 in Debian's build) and knit share one data dir.
func TestInteropWithReference(t *testing.T) {
	needReference(t)
	dir := t.TempDir()
	conf := netConf("1.0.0", dir, `"ranges":[[{"subnet":"10.7.0.0/28"}],[{"subnet":"fd07::/124"}]]`)

	ref1 := mustOK(t, runBinary(t, referencePlugin, call{cmd: "ADD", cid: "ref1", conf: conf}))
	ours1 := mustOK(t, runBinary(t, "", call{cmd: "ADD", cid: "ours1", conf: conf}))
	ref2 := mustOK(t, runBinary(t, referencePlugin, call{cmd: "ADD", cid: "ref2", conf: conf}))
	ours2 := mustOK(t, run(t, call{cmd: "ADD", cid: "ours2", conf: conf}))
	seen := map[string]string{}
	for cid, o := range map[string]outcome{"ref1": ref1, "ours1": ours1, "ref2": ref2, "ours2": ours2} {
		for _, a := range o.addrs() {
			if prev, dup := seen[a]; dup {
				t.Fatalf("%s given to both %s and %s", a, prev, cid)
			}
			seen[a] = cid
		}
	}
	// Round-robin continues across implementations.
	if ours1.addrs()[0] != "10.7.0.3/28" || ref2.addrs()[0] != "10.7.0.4/28" {
		t.Fatalf("round-robin across implementations: ours1 %v ref2 %v", ours1.addrs(), ref2.addrs())
	}
	// Re-ADD by knit of a reference allocation returns it.
	again := mustOK(t, run(t, call{cmd: "ADD", cid: "ref1", conf: conf}))
	if !reflect.DeepEqual(again.addrs(), ref1.addrs()) {
		t.Fatalf("knit re-ADD of reference allocation: %v, want %v", again.addrs(), ref1.addrs())
	}
	// The reference can CHECK what knit wrote, knit what the reference wrote.
	mustOK(t, runBinary(t, referencePlugin, call{cmd: "CHECK", cid: "ours1", conf: conf}))
	mustOK(t, runBinary(t, "", call{cmd: "CHECK", cid: "ref2", conf: conf}))

	// Each releases the other's allocation on DEL.
	mustOK(t, runBinary(t, "", call{cmd: "DEL", cid: "ref1", conf: conf}))
	mustOK(t, runBinary(t, referencePlugin, call{cmd: "DEL", cid: "ours1", conf: conf}))
	got := allocations(t, dir)
	for _, gone := range append(ref1.addrs(), ours1.addrs()...) {
		if _, ok := got[strings.Split(gone, "/")[0]]; ok {
			t.Fatalf("%s still allocated after DEL: %v", gone, got)
		}
	}
	if len(got) != 4 {
		t.Fatalf("DELs released too much or too little: %v", got)
	}
	// After the reference DELed knit's allocation, knit's stale hints are dropped.
	mustOK(t, run(t, call{cmd: "ADD", cid: "ours3", conf: conf}))
	for _, h := range hintNames(t, dir) {
		if strings.Contains(h, "~ours1~") {
			t.Fatalf("stale hint %s survived", h)
		}
	}
	mustOK(t, runBinary(t, referencePlugin, call{cmd: "DEL", cid: "ours2", conf: conf}))
	mustOK(t, runBinary(t, "", call{cmd: "DEL", cid: "ref2", conf: conf}))
	mustOK(t, runBinary(t, "", call{cmd: "DEL", cid: "ours3", conf: conf}))
	if got := allocations(t, dir); len(got) != 0 {
		t.Fatalf("left after all DELs: %v", got)
	}
}

// TestConcurrentProcesses is the acceptance test: 200 ADDs from 8 concurrent
// workers, each ADD a separate plugin process, on a dual-stack /24 + /64.
func TestConcurrentProcesses(t *testing.T) {
	const total, workers = 200, 8
	dir := t.TempDir()
	conf := netConf("1.0.0", dir, `"ranges":[[{"subnet":"10.8.0.0/24"}],[{"subnet":"fd08::/64"}]]`)
	cid := func(i int) string { return fmt.Sprintf("ctr-%03d", i) }

	results := make([]outcome, total)
	each := func(fn func(i int)) {
		var wg sync.WaitGroup
		jobs := make(chan int)
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range jobs {
					fn(i)
				}
			}()
		}
		for i := 0; i < total; i++ {
			jobs <- i
		}
		close(jobs)
		wg.Wait()
	}
	var mu sync.Mutex
	var failures []string
	fail := func(s string) {
		mu.Lock()
		failures = append(failures, s)
		mu.Unlock()
	}
	each(func(i int) {
		o := runBinary(t, "", call{cmd: "ADD", cid: cid(i), conf: conf})
		if o.code != 0 || len(o.addrs()) != 2 {
			fail(fmt.Sprintf("ADD %s: %s", cid(i), o.raw))
		}
		results[i] = o
	})
	if len(failures) > 0 {
		t.Fatalf("%d ADDs failed, first: %s", len(failures), failures[0])
	}
	owner := map[string]string{}
	for i, o := range results {
		for _, a := range o.addrs() {
			if prev, dup := owner[a]; dup {
				t.Fatalf("%s handed to %s and %s", a, prev, cid(i))
			}
			owner[a] = cid(i)
		}
	}
	files := allocations(t, dir)
	if len(files) != 2*total {
		t.Fatalf("%d address files, want %d", len(files), 2*total)
	}
	for ip, content := range files {
		net := "/24"
		if strings.Contains(ip, ":") {
			net = "/64"
		}
		if want := owner[ip+net] + "\r\neth0"; content != want {
			t.Fatalf("file %s holds %q, result says %q", ip, content, want)
		}
	}

	each(func(i int) {
		if o := runBinary(t, "", call{cmd: "DEL", cid: cid(i), conf: conf}); o.code != 0 {
			fail(fmt.Sprintf("DEL %s: %s", cid(i), o.raw))
		}
	})
	if len(failures) > 0 {
		t.Fatalf("%d DELs failed, first: %s", len(failures), failures[0])
	}
	if left := listDir(t, filepath.Join(dir, "testnet")); !reflect.DeepEqual(left, []string{"last_reserved_ip.0", "last_reserved_ip.1", "lock"}) {
		t.Fatalf("network dir after all DELs: %v", left)
	}
	if left := hintNames(t, dir); len(left) != 0 {
		t.Fatalf("hints after all DELs: %v", left)
	}
	if left := ownerEntries(t, dir); len(left) != 0 {
		t.Fatalf("owner index after all DELs: %v", left)
	}
}

// In-process goroutines share one process: flock is per open file, so the
// store must serialise them too (run with -race).
func TestConcurrentInProcess(t *testing.T) {
	dir := t.TempDir()
	conf := netConf("1.1.0", dir, `"ranges":[[{"subnet":"10.9.0.0/26"}]]`)
	var wg sync.WaitGroup
	addrs := make([][]string, 60)
	for i := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			addrs[i] = run(t, call{cmd: "ADD", cid: fmt.Sprintf("g%d", i), conf: conf}).addrs()
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for i, a := range addrs {
		if len(a) != 1 || seen[a[0]] {
			t.Fatalf("goroutine %d got %v", i, a)
		}
		seen[a[0]] = true
	}
	// 61 allocatable (.2-.62); 60 used.
	mustOK(t, run(t, call{cmd: "STATUS", conf: conf}))
	mustOK(t, run(t, call{cmd: "ADD", cid: "last", conf: conf}))
	mustFail(t, run(t, call{cmd: "STATUS", conf: conf}), 50, "no IP addresses available in range set 0 (10.9.0.1-10.9.0.62): all 61 are allocated")
}
