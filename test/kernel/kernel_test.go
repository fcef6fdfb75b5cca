package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const sampleLog = "SeaBIOS junk\r\n" +
	"=== KNIT GUEST kernel=6.1.0-56-cloud-amd64 cpus=2 uptime=2.1s\r\n" +
	"=== PACKAGE test/kernel/smoke START\r\n" +
	"=== RUN   TestIPVlanL2Traffic\r\n" +
	"--- PASS: TestIPVlanL2Traffic (0.50s)\r\n" +
	"[    3.1] some kernel message\r\n" +
	"=== RUN   TestVRFTable\r\n" +
	"    --- PASS: TestVRFTable/sub (0.01s)\r\n" +
	"--- PASS: TestVRFTable (0.02s)\r\n" +
	"--- SKIP: TestDummyAddress (0.00s)\r\n" +
	"PASS\r\n" +
	"=== PACKAGE test/kernel/smoke EXIT rc=0 uptime=4s\r\n" +
	"=== PACKAGE plugins/main/vlan START\r\n" +
	"--- FAIL: TestVlanAdd (1.00s)\r\n" +
	"=== PACKAGE plugins/main/vlan EXIT rc=1 uptime=5s\r\n" +
	"=== PACKAGE plugins/main/crash START\r\n" +
	"panic: boom\r\n" +
	"=== PACKAGE plugins/main/crash EXIT rc=2 uptime=6s\r\n" +
	"=== TEST EXIT rc=2 uptime=6s\r\n"

func TestParseAndCheck(t *testing.T) {
	g, err := parseSerial(strings.NewReader(sampleLog))
	if err != nil {
		t.Fatal(err)
	}
	if g.Release != "6.1.0-56-cloud-amd64" || !g.Marker || g.RC != 2 || len(g.Packages) != 3 {
		t.Fatalf("parsed %+v", g)
	}
	v := check(g, []string{"test/kernel/smoke", "plugins/main/vlan", "plugins/main/crash", "plugins/main/never"},
		[]string{"^TestIPVlan", "^TestVRF", "^TestDummy", "^TestVlan"})
	if v.Passed != 2 || v.Failed != 1 || v.Skipped != 1 {
		t.Errorf("counts %d/%d/%d, want 2 passed 1 failed 1 skipped", v.Passed, v.Failed, v.Skipped)
	}
	if !slices.Equal(v.Executed["test/kernel/smoke"], []string{"TestIPVlanL2Traffic", "TestVRFTable"}) {
		t.Errorf("executed %v", v.Executed)
	}
	// a failed required test still counts as run (its failure fails the run)
	if !slices.Equal(v.RequiredBy["^TestVlan"], []string{"plugins/main/vlan TestVlanAdd"}) {
		t.Errorf("required ^TestVlan satisfied by %q", v.RequiredBy["^TestVlan"])
	}
	want := []string{"plugins/main/crash: exited rc=2", "plugins/main/never: never started", "required test ^TestDummy was skipped or absent"}
	if len(v.Problems) != len(want) {
		t.Fatalf("problems %q", v.Problems)
	}
	for i, w := range want {
		if !strings.HasPrefix(v.Problems[i], w) {
			t.Errorf("problem %d = %q, want prefix %q", i, v.Problems[i], w)
		}
	}
	if v.ok() {
		t.Error("verdict ok despite failures")
	}
	var out bytes.Buffer
	v.print(&out, g, "6.1", []string{"^TestIPVlan"})
	for _, s := range []string{"ok   test/kernel/smoke [6.1]: 2 passed, 0 failed, 1 skipped", "FAIL plugins/main/vlan [6.1]", "--- FAIL: TestVlanAdd", "required [6.1] ^TestIPVlan: ran 1 (+0 subtests): test/kernel/smoke TestIPVlanL2Traffic"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("summary lacks %q:\n%s", s, out.String())
		}
	}
}

func TestMissingMarkerFails(t *testing.T) {
	g, _ := parseSerial(strings.NewReader("=== PACKAGE a START\n--- PASS: TestA (0.1s)\n"))
	v := check(g, []string{"a"}, nil)
	if v.ok() || len(v.Problems) != 2 {
		t.Errorf("a log without markers passed: %q", v.Problems)
	}
}

func TestClosure(t *testing.T) {
	g := depGraph{
		"kernel/net/8021q/8021q.ko.xz":       {"kernel/net/802/garp.ko.xz", "kernel/net/802/mrp.ko.xz"},
		"kernel/net/802/garp.ko.xz":          {"kernel/net/802/stp.ko.xz"},
		"kernel/net/802/stp.ko.xz":           nil,
		"kernel/net/802/mrp.ko.xz":           nil,
		"kernel/net/sched/sch_tbf.ko":        nil,
		"kernel/net/sched/sch_ingress.ko":    nil,
		"kernel/arch/crypto/crc32c-intel.ko": nil,
		"kernel/drivers/net/dummy.ko":        nil,
	}
	mods, unmatched := g.closure([]string{"8021q", "sch_*", "crc32c_intel", "wireguard"})
	want := []string{"kernel/arch/crypto/crc32c-intel.ko", "kernel/net/802/garp.ko.xz", "kernel/net/802/mrp.ko.xz",
		"kernel/net/802/stp.ko.xz", "kernel/net/8021q/8021q.ko.xz", "kernel/net/sched/sch_ingress.ko", "kernel/net/sched/sch_tbf.ko"}
	if !slices.Equal(mods, want) {
		t.Errorf("closure = %q\nwant %q", mods, want)
	}
	if !slices.Equal(unmatched, []string{"wireguard"}) {
		t.Errorf("unmatched = %q", unmatched)
	}
}

// TestCpioRoundTrip packs a tree and unpacks it with the system cpio, when
// there is one, to check the archive format.
func TestCpioRoundTrip(t *testing.T) {
	cpio, err := exec.LookPath("cpio")
	if err != nil {
		t.Skip("no cpio to cross-check the archive with")
	}
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "bin"), 0o755)
	os.WriteFile(filepath.Join(src, "init"), []byte("#!/bin/sh\necho hi\n"), 0o755)
	os.WriteFile(filepath.Join(src, "bin", "odd"), []byte("x"), 0o644)
	os.Symlink("odd", filepath.Join(src, "bin", "link"))
	var buf bytes.Buffer
	if err := writeCpio(&buf, src); err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	cmd := exec.Command(cpio, "-id", "--quiet")
	cmd.Dir = dst
	cmd.Stdin = &buf
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -id: %v %s", err, out)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "init")); string(b) != "#!/bin/sh\necho hi\n" {
		t.Errorf("init = %q", b)
	}
	if fi, err := os.Stat(filepath.Join(dst, "init")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("init mode: %v %v", fi, err)
	}
	if l, _ := os.Readlink(filepath.Join(dst, "bin", "link")); l != "odd" {
		t.Errorf("symlink = %q", l)
	}
}

func TestPrefixWriterFilters(t *testing.T) {
	var out bytes.Buffer
	w := &prefixWriter{w: &out, prefix: "[k] ", filter: milestone}
	io.WriteString(w, "=== PACKAGE a START\r\nnoise\n--- FAIL: Te")
	io.WriteString(w, "stX (1s)\n")
	if got := out.String(); got != "[k] === PACKAGE a START\n[k] --- FAIL: TestX (1s)\n" {
		t.Errorf("got %q", got)
	}
}
