package hostlocal

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/knit-cni/knit/pkg/cni"
)

// childBin is the binary child runs as the plugin: this test binary, or
// for the churn under -race a build of it without the race detector.
var childBin = os.Args[0]

// child runs this test binary as the plugin without touching t (safe from
// any goroutine). extraEnv adds variables.
func child(ctx context.Context, c call, extraEnv ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, childBin)
	cmd.Env = append([]string{"PATH=/usr/bin:/bin", asPluginEnv + "=1", "GORACE=atexit_sleep_ms=0"}, extraEnv...)
	for k, v := range envFor(c) {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdin = strings.NewReader(c.conf)
	return cmd
}

// addrsOf runs c (an ADD) and returns its addresses, or an error.
func addrsOf(c call) ([]string, error) {
	var out bytes.Buffer
	cmd := child(context.Background(), c)
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %v: %s", c.cmd, c.cid, err, out.String())
	}
	if c.cmd != "ADD" {
		return nil, nil
	}
	r, err := cni.ParseResult(out.Bytes(), "")
	if err != nil {
		return nil, fmt.Errorf("ADD %s: bad result %q: %v", c.cid, out.String(), err)
	}
	var addrs []string
	for _, ip := range r.IPs {
		addrs = append(addrs, ip.Address.IP.String())
	}
	return addrs, nil
}

// leftovers describes everything in the data dir besides the reference's
// fixed files and boot_id: address files, hints, temporary files.
func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for ip, owner := range allocations(t, dir) {
		out = append(out, ip+"="+strings.ReplaceAll(owner, "\r\n", "/"))
	}
	for _, h := range hintNames(t, dir) {
		out = append(out, "hint:"+h)
	}
	sort.Strings(out)
	return out
}

// state is what one container holds right after its ADD was killed.
func state(t *testing.T, dir, cid string) string {
	t.Helper()
	files, hints, tmps := 0, 0, 0
	for _, owner := range allocations(t, dir) {
		if strings.HasPrefix(owner, cid+"\r\n") {
			files++
		}
	}
	for _, h := range listDir(t, filepath.Join(dir, ".knit", "testnet")) {
		switch {
		case strings.Contains(h, "~"+cid+"~"):
			hints++
		case strings.HasPrefix(h, "tmp."):
			tmps++
		}
	}
	return fmt.Sprintf("files=%d hints=%d tmp=%d", files, hints, tmps)
}

// TestKilledAdd SIGKILLs host-local at random points of ADD, then releases
// the victims by DEL (even rounds) or GC (odd rounds), and shows no leftover
// and no duplicate address among the containers that live on.
func TestKilledAdd(t *testing.T) {
	rounds := 120
	if testing.Short() {
		rounds = 30
	}
	const stepDelayUS = 3000
	dir := t.TempDir()
	conf := netConf("1.1.0", dir, `"ranges":[[{"subnet":"10.44.0.0/24"}],[{"subnet":"fd44::/64"}]]`)
	delayEnv := stepDelayEnv + "=" + strconv.Itoa(stepDelayUS)

	// Typical ADD duration with the step delays, to spread the kills over.
	var typical time.Duration
	for i := range 5 {
		start := time.Now()
		if err := child(context.Background(), call{cmd: "ADD", cid: fmt.Sprintf("warm%d", i), conf: conf}, delayEnv).Run(); err != nil {
			t.Fatal(err)
		}
		typical += time.Since(start) / 5
		if _, err := addrsOf(call{cmd: "DEL", cid: fmt.Sprintf("warm%d", i), conf: conf}); err != nil {
			t.Fatal(err)
		}
	}
	// Process start-up (a VERSION does no store work): kills before it are
	// all alike, so most land after it.
	var startup time.Duration
	for range 3 {
		start := time.Now()
		cmd := child(context.Background(), call{cmd: "VERSION", conf: `{"cniVersion":"1.1.0"}`})
		if err := cmd.Run(); err != nil {
			t.Fatal(err)
		}
		startup += time.Since(start) / 3
	}
	t.Logf("typical ADD with step delays: %v, process start-up %v", typical, startup)
	lo, hi := startup*3/4, typical+typical/5
	if hi <= lo {
		lo = 0
	}

	dist := map[string]int{}
	owner := map[string]string{} // address -> live container
	var live []string
	for i := range rounds {
		victim := fmt.Sprintf("victim%03d", i)
		cmd := child(context.Background(), call{cmd: "ADD", cid: victim, conf: conf}, delayEnv)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		timer := time.NewTimer(lo + time.Duration(rand.Int64N(int64(hi-lo))))
		finished := false
		select {
		case <-done:
			finished = true
		case <-timer.C:
			cmd.Process.Kill() // this child's PID only
			<-done
		}
		timer.Stop()
		st := state(t, dir, victim)
		if finished {
			st = "completed"
		}
		dist[st]++

		// A new container must never get an address someone holds.
		survivor := fmt.Sprintf("live%03d", i)
		addrs, err := addrsOf(call{cmd: "ADD", cid: survivor, conf: conf})
		if err != nil {
			t.Fatalf("after kill %d (%s): %v", i, st, err)
		}
		for _, a := range addrs {
			if prev, dup := owner[a]; dup {
				t.Fatalf("%s given to %s and %s", a, prev, survivor)
			}
			owner[a] = survivor
		}
		live = append(live, survivor)
		if i%2 == 0 {
			if _, err := addrsOf(call{cmd: "DEL", cid: victim, conf: conf}); err != nil {
				t.Fatal(err)
			}
			if s := state(t, dir, victim); s != "files=0 hints=0 tmp=0" {
				t.Fatalf("DEL of killed %s left %s", victim, s)
			}
		}
	}
	// GC keeps the live containers and releases the odd rounds' victims.
	var valid []map[string]string
	for _, c := range live {
		valid = append(valid, map[string]string{"containerID": c, "ifname": "eth0"})
	}
	vj, _ := json.Marshal(valid)
	if _, err := addrsOf(call{cmd: "GC", conf: netConf("1.1.0", dir, `"ranges":[[{"subnet":"10.44.0.0/24"}],[{"subnet":"fd44::/64"}]]`, `"cni.dev/valid-attachments":`+string(vj))}); err != nil {
		t.Fatal(err)
	}
	for _, l := range leftovers(t, dir) {
		name, who, _ := strings.Cut(l, "=")
		if strings.HasPrefix(l, "hint:") {
			if !strings.Contains(l, "~live") {
				t.Errorf("leftover hint after DEL/GC: %s", l)
			}
			continue
		}
		if owner[name]+"/eth0" != who {
			t.Errorf("after GC %s is held by %q, want %q", name, who, owner[name])
		}
	}
	if got := len(allocations(t, dir)); got != len(owner) {
		t.Errorf("%d address files for %d live addresses", got, len(owner))
	}
	for _, c := range live {
		if _, err := addrsOf(call{cmd: "DEL", cid: c, conf: conf}); err != nil {
			t.Fatal(err)
		}
	}
	if l := leftovers(t, dir); len(l) != 0 {
		t.Fatalf("left after every DEL: %v", l)
	}
	for _, n := range listDir(t, filepath.Join(dir, ".knit", "testnet")) {
		if strings.HasPrefix(n, "tmp.") {
			t.Fatalf("temporary file %s left", n)
		}
	}
	var keys []string
	for k := range dist {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		t.Logf("kill landed with %-26s %3d times", k, dist[k])
	}
	if len(dist) < 4 {
		t.Errorf("kills landed at only %d distinct points (%v): the injection is not exercising ADD", len(dist), dist)
	}
}

// TestChurn: 8 worker processes at a time churn ADD/DEL on one /24; every
// result is checked against a shared registry of held addresses, and nothing
// is left at the end. KNIT_CHURN_OPS sets the number of ADDs (default 5000).
func TestChurn(t *testing.T) {
	total := 5000
	if n, err := strconv.Atoi(os.Getenv("KNIT_CHURN_OPS")); err == nil {
		total = n
	} else if testing.Short() {
		total = 500
	}
	const workers, hold = 8, 12
	if raceEnabled {
		// The workers are separate processes: the race detector has nothing
		// to find across them and would only slow them down.
		bin := filepath.Join(t.TempDir(), "hostlocal.test")
		if out, err := exec.Command("go", "test", "-c", "-o", bin, ".").CombinedOutput(); err != nil {
			t.Fatalf("building the plugin without -race: %v\n%s", err, out)
		}
		childBin = bin
		t.Cleanup(func() { childBin = os.Args[0] })
	}
	dir := t.TempDir()
	conf := netConf("1.1.0", dir, `"ranges":[[{"subnet":"10.45.0.0/24"}]]`)
	var (
		mu       sync.Mutex
		registry = map[string]string{}
		errs     []error
		next     int
		peak     int
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var held []string
			del := func() bool {
				k := rand.IntN(len(held))
				cid := held[k]
				held = append(held[:k], held[k+1:]...)
				mu.Lock()
				for a, c := range registry {
					if c == cid {
						delete(registry, a) // before DEL: nobody can get it until DEL frees it
					}
				}
				mu.Unlock()
				if _, err := addrsOf(call{cmd: "DEL", cid: cid, conf: conf}); err != nil {
					fail(err)
					return false
				}
				return true
			}
			for {
				mu.Lock()
				if len(errs) > 0 || next >= total {
					mu.Unlock()
					break
				}
				next++
				i := next
				mu.Unlock()
				if len(held) >= hold || len(held) > 0 && rand.IntN(2) == 0 {
					if !del() {
						return
					}
				}
				cid := fmt.Sprintf("w%d-%d", w, i)
				addrs, err := addrsOf(call{cmd: "ADD", cid: cid, conf: conf})
				if err != nil {
					fail(err)
					return
				}
				mu.Lock()
				for _, a := range addrs {
					if prev, dup := registry[a]; dup {
						errs = append(errs, fmt.Errorf("duplicate: %s given to %s while %s holds it", a, cid, prev))
					}
					registry[a] = cid
				}
				peak = max(peak, len(registry))
				mu.Unlock()
				held = append(held, cid)
			}
			for len(held) > 0 {
				if !del() {
					return
				}
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d errors, first: %v", len(errs), errs[0])
	}
	if l := leftovers(t, dir); len(l) != 0 {
		t.Fatalf("left after the churn: %v", l)
	}
	t.Logf("%d ADD + %d DEL by %d concurrent processes in %v (peak %d held, 0 duplicates, 0 leftovers)", total, total, workers, time.Since(start), peak)
}
