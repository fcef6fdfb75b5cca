package main

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/knit-cni/knit/internal/netns"
	"github.com/knit-cni/knit/internal/nstest"
	"github.com/knit-cni/knit/pkg/cni"
)

// TestAttachLifecycle drives add, ls, check, del against loopback +
// host-local, with the network given by name and by path.
func TestAttachLifecycle(t *testing.T) {
	e := newEnv(t)
	ctr := nstest.New(t, "c")
	name := nstest.UniqueName("n")
	path := e.conflist(name, "1.0.0", `{"type":"loopback"}`, e.hostLocal("10.211.0.0/24"))

	r := e.ok("add", name, "c1", "--netns", ctr, "--args", "IgnoreUnknown=1;K8S_POD_NAME=p1")
	res, err := cni.ParseResult([]byte(r.stdout), "")
	if err != nil {
		t.Fatalf("add printed an unparsable result: %v\n%s", err, r.stdout)
	}
	if res.CNIVersion != "1.0.0" || len(res.IPs) != 1 {
		t.Fatalf("add result: want one IP at 1.0.0, got %s", r.stdout)
	}
	_, subnet, _ := net.ParseCIDR("10.211.0.0/24")
	addr := res.IPs[0].Address
	if !subnet.Contains(addr.IP) {
		t.Fatalf("address %s not in the configured subnet", addr.String())
	}
	// The loopback plugin really ran in the container namespace.
	assertLoopbackUp(t, ctr)

	// ls as a table and as JSON.
	r = e.ok("ls")
	if !strings.Contains(r.stdout, name) || !strings.Contains(r.stdout, "c1") || !strings.Contains(r.stdout, addr.String()) || !strings.Contains(r.stdout, ctr) {
		t.Fatalf("ls table misses the attachment:\n%s", r.stdout)
	}
	var views []attachmentView
	r = e.ok("ls", "-o", "json", "--net", name)
	if err := json.Unmarshal([]byte(r.stdout), &views); err != nil {
		t.Fatalf("ls -o json: %v\n%s", err, r.stdout)
	}
	if len(views) != 1 || views[0].ContainerID != "c1" || views[0].IfName != "eth0" || views[0].NetNS != ctr ||
		len(views[0].Addresses) != 1 || views[0].Addresses[0] != addr.String() {
		t.Fatalf("ls -o json: got %+v", views)
	}
	if len(views[0].Args) != 2 || views[0].Args[1] != [2]string{"K8S_POD_NAME", "p1"} {
		t.Fatalf("ls -o json: cached args %v, want the ADD's", views[0].Args)
	}
	r = e.ok("ls", "--net", "some-other-net")
	if strings.Contains(r.stdout, "c1") {
		t.Fatalf("ls --net filter shows other networks:\n%s", r.stdout)
	}

	// check passes by name and by path; the namespace comes from the cache.
	e.ok("check", name, "c1", "--netns", ctr)
	e.ok("check", path, "c1")

	// A second add to the same network gets another address.
	r = e.ok("add", path, "c2", "--netns", ctr, "--ifname", "eth1")
	res2, err := cni.ParseResult([]byte(r.stdout), "")
	if err != nil || len(res2.IPs) != 1 || res2.IPs[0].Address.IP.Equal(addr.IP) {
		t.Fatalf("second add: %v\n%s", err, r.stdout)
	}
	if got := len(e.cacheFiles()); got != 2 {
		t.Fatalf("want 2 cache files, got %v", e.cacheFiles())
	}

	// del without --netns: taken from the cache; the IPAM reservation goes.
	e.ok("del", name, "c1")
	e.ok("del", name, "c2", "--ifname", "eth1")
	if files := e.cacheFiles(); len(files) != 0 {
		t.Fatalf("cache files left after del: %v", files)
	}
	if _, err := os.Stat(filepath.Join(e.ipam, name, addr.IP.String())); !os.IsNotExist(err) {
		t.Fatalf("host-local reservation of %s left after del (err %v)", addr.IP, err)
	}
	// del is idempotent.
	e.ok("del", name, "c1")
	r = e.ok("ls", "-o", "json")
	if strings.TrimSpace(r.stdout) != "[]" {
		t.Fatalf("ls after del: %s", r.stdout)
	}
}

func assertLoopbackUp(t *testing.T, ns string) {
	t.Helper()
	err := netns.Do(ns, func() error {
		ifc, err := net.InterfaceByName("lo")
		if err != nil {
			return err
		}
		if ifc.Flags&net.FlagUp == 0 {
			t.Errorf("lo is down in %s: the loopback plugin did not run there", ns)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestStatusVersionGC runs status and version, and gc at CNI 1.1.0 with
// the valid attachments derived from live namespaces and from --keep.
func TestStatusVersionGC(t *testing.T) {
	e := newEnv(t)
	name := nstest.UniqueName("g")
	e.conflist(name, "1.0.0", `{"type":"loopback"}`, e.hostLocal("10.212.0.0/24"))
	ns1 := nstest.New(t, "c")
	ns2 := nstest.New(t, "c")
	e.ok("add", name, "live", "--netns", ns1)
	e.ok("add", name, "gone", "--netns", ns2)
	if err := netns.DeletePath(ns2); err != nil {
		t.Fatal(err)
	}

	r := e.ok("gc", name)
	if !strings.Contains(r.stdout, "1 attachment(s) kept") {
		t.Fatalf("gc output: %s", r)
	}
	files := e.cacheFiles()
	if len(files) != 1 || files[0] != name+"-live-eth0" {
		t.Fatalf("after gc want only the live attachment cached, got %v", files)
	}
	// --keep names the valid attachments explicitly.
	e.ok("gc", name, "--keep", "live/eth0")
	if len(e.cacheFiles()) != 1 {
		t.Fatalf("gc --keep live/eth0 removed it: %v", e.cacheFiles())
	}
	e.ok("gc", name, "--keep", "other/eth0")
	if files := e.cacheFiles(); len(files) != 0 {
		t.Fatalf("gc --keep other/eth0 left %v", files)
	}
	assertNoReservations(t, e, name)
	r = e.run("gc", name, "--keep", "no-slash")
	if r.code != 2 || !strings.Contains(r.stderr, "CONTAINER-ID/IFNAME") {
		t.Fatalf("gc --keep no-slash: %s", r)
	}

	r = e.ok("status", name)
	if !strings.Contains(r.stdout, name+": ready") {
		t.Fatalf("status: %s", r)
	}

	// STATUS and GC proper need 1.1.0: knit's loopback speaks it.
	if !hasPlugin(t, "loopback") {
		t.Skip("knit-plugin has no loopback yet")
	}
	v11 := nstest.UniqueName("s")
	e.conflist(v11, "1.1.0", `{"type":"loopback"}`)
	r = e.ok("status", v11)
	if strings.TrimSpace(r.stdout) != v11+": ready" {
		t.Fatalf("status at 1.1.0: %s", r)
	}
	e.ok("add", v11, "x1", "--netns", ns1)
	e.ok("gc", v11)
	if files := e.cacheFiles(); len(files) != 1 {
		t.Fatalf("gc at 1.1.0 with a live namespace: cache %v", files)
	}
	e.ok("del", v11, "x1")

	r = e.ok("version", "loopback", "-o", "json")
	var vi cni.VersionInfo
	if err := json.Unmarshal([]byte(r.stdout), &vi); err != nil || !vi.Supports("1.1.0") {
		t.Fatalf("version loopback: %v %s", err, r)
	}
	r = e.ok("version", "loopback")
	if !strings.HasPrefix(r.stdout, "loopback: cniVersion ") || !strings.Contains(r.stdout, "1.1.0") {
		t.Fatalf("version loopback: %s", r)
	}
}

// TestAttachErrors checks bad input fails with the spec's codes and a hint,
// and leaves nothing behind.
func TestAttachErrors(t *testing.T) {
	e := newEnv(t)
	ctr := nstest.New(t, "c")
	name := nstest.UniqueName("e")
	e.conflist(name, "1.0.0", `{"type":"loopback"}`, e.hostLocal("10.213.0.0/24"))
	bad := filepath.Join(t.TempDir(), "bad.conflist")
	if err := os.WriteFile(bad, []byte(`{"cniVersion":"1.0.0","name":"bad","plugins":[{"type":"a/b"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name   string
		args   []string
		code   int
		stderr []string
	}{
		{"missing network", []string{"add", "nosuchnet", "c1", "--netns", ctr}, 1, []string{`"nosuchnet"`, "--conf-dir"}},
		{"missing config file", []string{"add", "/nonexistent/x.conflist", "c1", "--netns", ctr}, 1, []string{"(CNI error code 5)"}},
		{"bad args", []string{"add", name, "c1", "--netns", ctr, "--args", "A=1;B"}, 1, []string{"(CNI error code 4)", "K1=V1;K2=V2"}},
		{"empty arg key", []string{"add", name, "c1", "--netns", ctr, "--args", "=1"}, 1, []string{"(CNI error code 4)"}},
		{"bad cap-args", []string{"add", name, "c1", "--netns", ctr, "--cap-args", "{nope"}, 1, []string{"(CNI error code 6)", "JSON object"}},
		{"cap-args not an object", []string{"add", name, "c1", "--netns", ctr, "--cap-args", "[1]"}, 1, []string{"(CNI error code 6)"}},
		{"invalid container ID", []string{"add", name, "bad id!", "--netns", ctr}, 1, []string{"invalid characters in containerID", "(CNI error code 4)"}},
		{"invalid ifname", []string{"add", name, "c1", "--netns", ctr, "--ifname", "a:b"}, 1, []string{"(CNI error code 4)"}},
		{"ifname too long", []string{"add", name, "c1", "--netns", ctr, "--ifname", "abcdefghijklmnopq"}, 1, []string{"too long", "(CNI error code 4)"}},
		{"missing netns", []string{"add", name, "c1"}, 2, []string{"--netns is required"}},
		{"netns does not exist", []string{"add", name, "c1", "--netns", "ktnope-none"}, 1, []string{"(CNI error code 8)", "knit netns add"}},
		{"plugin not found", []string{"add", name, "c1", "--netns", ctr, "--cni-path", "/nonexistent"}, 1, []string{"(CNI error code 50)"}},
		{"invalid plugin type", []string{"add", bad, "c1", "--netns", ctr}, 1, []string{"(CNI error code 7)"}},
		{"too few operands", []string{"add", name}, 2, []string{"NET and CONTAINER-ID"}},
		{"unknown flag", []string{"add", name, "c1", "--bogus"}, 2, []string{"unknown flag"}},
		{"bad log level", []string{"--log-level", "loud", "ls"}, 2, []string{"--log-level"}},
		{"check unknown attachment", []string{"check", name, "never"}, 2, []string{"--netns is required"}},
		{"version of a path", []string{"version", "../x"}, 1, []string{"(CNI error code 7)"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.run(tc.args...)
			if r.code != tc.code {
				t.Fatalf("want exit %d: %s", tc.code, r)
			}
			if !strings.HasPrefix(r.stderr, "knit: ") {
				t.Errorf("error not prefixed with knit: %q", r.stderr)
			}
			for _, s := range tc.stderr {
				if !strings.Contains(r.stderr, s) {
					t.Errorf("stderr lacks %q: %s", s, r.stderr)
				}
			}
		})
	}
	if files := e.cacheFiles(); len(files) != 0 {
		t.Fatalf("failed commands left cache files: %v", files)
	}
	assertNoReservations(t, e, name)
}

// assertNoReservations fails if host-local holds any address for network.
func assertNoReservations(t *testing.T, e *env, network string) {
	t.Helper()
	ents, _ := os.ReadDir(filepath.Join(e.ipam, network))
	for _, en := range ents {
		if net.ParseIP(en.Name()) != nil {
			t.Errorf("host-local reservation %s left behind", en.Name())
		}
	}
}

// TestHelp checks every verb documents itself.
func TestHelp(t *testing.T) {
	e := newEnv(t)
	for _, verb := range [][]string{{}, {"add"}, {"del"}, {"check"}, {"gc"}, {"status"}, {"version"}, {"ls"},
		{"run"}, {"install"}, {"demo"}, {"netns"}, {"netns", "add"}, {"netns", "del"}, {"netns", "ls"}, {"netns", "exec"}} {
		r := e.ok(append(verb, "--help")...)
		if !strings.Contains(r.stdout, "Usage:") || !strings.Contains(r.stdout, "knit") {
			t.Errorf("knit %v --help: %s", verb, r)
		}
	}
}
