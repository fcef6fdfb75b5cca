package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/knit-cni/knit/internal/netns"
	"github.com/knit-cni/knit/internal/nstest"
)

func TestNetns(t *testing.T) {
	e := newEnv(t)
	name := nstest.UniqueName("ns")
	t.Cleanup(func() { _ = netns.Delete("", name) })

	r := e.ok("netns", "add", name)
	path := strings.TrimSpace(r.stdout)
	if path != netns.Path("", name) {
		t.Fatalf("netns add printed %q, want %q", path, netns.Path("", name))
	}
	if err := netns.Check(path); err != nil {
		t.Fatalf("netns add made no namespace: %v", err)
	}
	if r := e.run("netns", "add", name); r.code != 1 || !strings.Contains(r.stderr, "already exists") {
		t.Fatalf("adding it twice: %s", r)
	}

	r = e.ok("netns", "ls")
	if !containsLine(r.stdout, name) {
		t.Fatalf("netns ls lacks %s:\n%s", name, r.stdout)
	}
	r = e.ok("netns", "ls", "-o", "json")
	var entries []struct{ Name, Path string }
	if err := json.Unmarshal([]byte(r.stdout), &entries); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, en := range entries {
		found = found || (en.Name == name && en.Path == path)
	}
	if !found {
		t.Fatalf("netns ls -o json lacks %s: %s", name, r.stdout)
	}

	// exec runs inside: its namespace is the named one, /sys shows only lo.
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	r = e.ok("netns", "exec", name, "--", "sh", "-c", "readlink /proc/self/ns/net; ls /sys/class/net")
	want := fmt.Sprintf("net:[%d]\nlo\n", st.Ino)
	if r.stdout != want {
		t.Fatalf("netns exec output %q, want %q", r.stdout, want)
	}
	// by path too, with the child's exit status and signal passed on.
	if r := e.run("netns", "exec", path, "--", "sh", "-c", "exit 7"); r.code != 7 {
		t.Fatalf("want exit status 7: %s", r)
	}
	if r := e.run("netns", "exec", name, "--", "sh", "-c", "kill -TERM $$"); r.code != 143 {
		t.Fatalf("want exit status 143: %s", r)
	}
	if r := e.run("netns", "exec", name, "--", "/nonexistent"); r.code != 1 || !strings.Contains(r.stderr, "not found") {
		t.Fatalf("exec of a missing command: %s", r)
	}
	if r := e.run("netns", "exec", "ktno-such-ns", "--", "true"); r.code != 1 || !strings.Contains(r.stderr, "knit netns add") {
		t.Fatalf("exec in a missing namespace: %s", r)
	}

	e.ok("netns", "del", name)
	if containsLine(e.ok("netns", "ls").stdout, name) {
		t.Fatalf("netns del left %s", name)
	}
	if r := e.run("netns", "del", name); r.code != 1 || !strings.Contains(r.stderr, "knit netns ls") {
		t.Fatalf("deleting it twice: %s", r)
	}
	for _, bad := range []string{"..", "a/b"} {
		if r := e.run("netns", "add", bad); r.code == 0 {
			t.Errorf("netns add %q succeeded", bad)
		}
	}
}

func containsLine(s, line string) bool {
	for _, l := range strings.Split(s, "\n") {
		if l == line {
			return true
		}
	}
	return false
}
