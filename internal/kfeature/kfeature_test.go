package kfeature

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"

	vnetns "github.com/vishvananda/netns"
)

func needRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: probes create network namespaces")
	}
}

func TestNamesAndConfigs(t *testing.T) {
	seen := map[string]bool{}
	for _, f := range All() {
		if f.String() == "" || !strings.HasPrefix(f.Config(), "CONFIG_") || features[f].probe == nil {
			t.Errorf("feature %d incomplete: %q %q", int(f), f, f.Config())
		}
		if seen[f.String()] {
			t.Errorf("duplicate feature name %q", f)
		}
		seen[f.String()] = true
	}
	if got := Feature(99).String(); got != "kfeature.Feature(99)" {
		t.Errorf("unknown feature prints %q", got)
	}
	if err := Check(Feature(-1)); err == nil {
		t.Error("Check accepted an unknown feature")
	}
}

// TestProbeEveryFeature runs every real probe: each must give a clear yes or
// no (never a probe-machinery failure) and leave the caller's namespace
// alone.
func TestProbeEveryFeature(t *testing.T) {
	needRoot(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	before, err := vnetns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()
	for _, f := range All() {
		err := Check(f)
		var missing *MissingError
		switch {
		case err == nil:
			t.Logf("%-22s present", f)
		case errors.As(err, &missing):
			t.Logf("%-22s missing: %v", f, missing.Err)
			if !strings.Contains(err.Error(), "kernel lacks "+f.String()+" ("+f.Config()+")") ||
				!strings.Contains(err.Error(), "make test-kernels") {
				t.Errorf("message does not name the feature and the way out: %v", err)
			}
		default:
			t.Errorf("%s: probe machinery failed: %v", f, err)
		}
		if err2 := Check(f); err2 != err {
			t.Errorf("%s: second Check gave %v, want the cached %v", f, err2, err)
		}
	}
	// veth is what every integration test uses; a kernel without it is no
	// test machine, and this keeps the probe from trivially reporting "no".
	if err := Check(Veth); err != nil {
		t.Errorf("veth probe: %v", err)
	}
	after, err := vnetns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer after.Close()
	if !before.Equal(after) {
		t.Error("probing left the thread in another network namespace")
	}
}

// recorder stands in for a *testing.T to see whether Require skips or fails.
type recorder struct {
	testing.TB
	skipped, failed string
}

func (r *recorder) Helper() {}
func (r *recorder) Skip(args ...any) {
	r.skipped = fmt.Sprint(args...)
	runtime.Goexit()
}
func (r *recorder) Skipf(format string, args ...any) {
	r.skipped = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func requireIn(t *testing.T, f Feature) *recorder {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() { defer close(done); Require(r, f) }()
	<-done
	return r
}

// withMissingIFB makes the IFB probe fail as on a kernel without ifb.
func withMissingIFB(t *testing.T) {
	saved := features[IFB].probe
	features[IFB].probe = func() error { return errors.New("operation not supported") }
	mu.Lock()
	delete(cache, IFB)
	mu.Unlock()
	t.Cleanup(func() {
		features[IFB].probe = saved
		mu.Lock()
		delete(cache, IFB)
		mu.Unlock()
	})
}

func TestRequireSkipsOnHost(t *testing.T) {
	needRoot(t)
	t.Setenv(InVMEnv, "")
	withMissingIFB(t)
	r := requireIn(t, IFB)
	if r.failed != "" || !strings.Contains(r.skipped, "kernel lacks ifb (CONFIG_IFB)") {
		t.Errorf("skipped %q failed %q", r.skipped, r.failed)
	}
}

func TestRequireFailsInKernelVM(t *testing.T) {
	needRoot(t)
	t.Setenv(InVMEnv, "1")
	withMissingIFB(t)
	r := requireIn(t, IFB)
	if r.skipped != "" || !strings.Contains(r.failed, "kernel lacks ifb") {
		t.Errorf("skipped %q failed %q", r.skipped, r.failed)
	}
}

func TestRequirePresentFeatureContinues(t *testing.T) {
	needRoot(t)
	r := requireIn(t, Veth)
	if r.skipped != "" || r.failed != "" {
		t.Errorf("Require(Veth) skipped %q failed %q", r.skipped, r.failed)
	}
}
