package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// snapshotState lists what the demo could leave behind on the real host:
// named namespaces and host-local data of the talk's networks.
func snapshotState(t *testing.T) map[string]bool {
	t.Helper()
	seen := map[string]bool{}
	for _, dir := range []string{"/run/netns", "/var/lib/cni/networks/mynet", "/var/lib/cni/networks/imthebestnetever", "/var/lib/cni/results"} {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			seen[filepath.Join(dir, e.Name())] = true
		}
	}
	return seen
}

func assertNothingLeft(t *testing.T, before map[string]bool) {
	t.Helper()
	for p := range snapshotState(t) {
		if !before[p] {
			t.Errorf("the demo left %s behind", p)
		}
	}
}

func demoCmd(t *testing.T) *exec.Cmd {
	knit, plugins := binaries(t)
	cmd := exec.Command(knit, "demo", "--from", filepath.Join(plugins, "knit-plugin"))
	cmd.Env = append(os.Environ(), "KNIT_DEMO_SANDBOXED=")
	return cmd
}

// TestDemo runs the README's main job end to end: every traffic check
// passes and nothing is left on the host.
func TestDemo(t *testing.T) {
	if !hasPlugin(t, "bridge") || !hasPlugin(t, "ptp") {
		t.Fatal("the plugin build lacks bridge or ptp")
	}
	before := snapshotState(t)
	out, err := demoCmd(t).CombinedOutput()
	if err != nil {
		t.Fatalf("knit demo: %v\n%s", err, out)
	}
	text := string(out)
	if strings.Contains(text, "FAIL") || strings.Count(text, "\n  ok ") < 6 {
		t.Errorf("expected 6 passing traffic checks and no failure:\n%s", text)
	}
	for _, want := range []string{
		"the server saw the connection come from 203.0.113.1", // masqueraded
		"port of myawesomebr [hairpin]",
		"10.22.0.1/16",
		"nothing of the demo is left",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("demo output lacks %q:\n%s", want, text)
		}
	}
	assertNothingLeft(t, before)
}

// TestDemoInterrupted stops the demo with SIGINT while it runs: it cleans
// up, and the private mount namespace guarantees the rest.
func TestDemoInterrupted(t *testing.T) {
	before := snapshotState(t)
	cmd := demoCmd(t)
	var buf syncBuffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(buf.String(), "ADD ns2") && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	if err == nil && !strings.Contains(buf.String(), "nothing of the demo is left") {
		t.Errorf("interrupted demo neither failed nor finished cleanly:\n%s", buf.String())
	}
	if !strings.Contains(buf.String(), "cleaning up") {
		t.Errorf("interrupted demo did not clean up:\n%s", buf.String())
	}
	assertNothingLeft(t, before)
}

// syncBuffer is a strings.Builder safe to read while a process writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
