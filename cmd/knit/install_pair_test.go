package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The two builds `make build` makes (cmd/knit-plugin with -tags knit_core
// and knit_extra): exactly the documented plugins each, together every
// plugin of the full build, and installed as a pair with each type linked to
// the first binary that has it.
var (
	corePlugins  = []string{"bridge", "firewall", "host-local", "loopback", "portmap", "ptp", "static"}
	extraPlugins = []string{"bandwidth", "dhcp", "dummy", "host-device", "host-local", "ipvlan", "macvlan", "sbr", "static", "tap", "tuning", "vlan", "vrf"}
)

// buildTagged builds cmd/knit-plugin with tags into dir/name.
func buildTagged(t *testing.T, dir, name, tags string) string {
	t.Helper()
	bin := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-trimpath", "-tags", tags, "-o", bin, "../knit-plugin")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build -tags %s: %v\n%s", tags, err, out)
	}
	return bin
}

func TestInstallPair(t *testing.T) {
	e := newEnv(t)
	full := listTypes(t)
	src := t.TempDir()
	core := buildTagged(t, src, pluginBinary, "knit_core")
	extra := buildTagged(t, src, extraBinary, "knit_extra")
	list := func(bin string) []string {
		out, err := exec.Command(bin, "--list").Output()
		if err != nil {
			t.Fatal(err)
		}
		return strings.Fields(string(out))
	}
	if got := list(core); !slices.Equal(got, corePlugins) {
		t.Fatalf("the knit_core build has %v; want %v", got, corePlugins)
	}
	if got := list(extra); !slices.Equal(got, extraPlugins) {
		t.Fatalf("the knit_extra build has %v; want %v", got, extraPlugins)
	}
	union := slices.Compact(slices.Sorted(slices.Values(append(slices.Clone(corePlugins), extraPlugins...))))
	if !slices.Equal(union, full) {
		t.Fatalf("the two builds together have %v; the full build %v", union, full)
	}

	dir := filepath.Join(t.TempDir(), "bin")
	r := e.ok("install", "--dir", dir, "--from", core)
	if !strings.Contains(r.stdout, pluginBinary+": installed") || !strings.Contains(r.stdout, extraBinary+": installed") {
		t.Fatalf("pair install: %s", r)
	}
	for _, typ := range full {
		want := extraBinary
		if slices.Contains(corePlugins, typ) {
			want = pluginBinary
		}
		if got, err := os.Readlink(filepath.Join(dir, typ)); err != nil || got != want {
			t.Fatalf("%s links to %q (%v); want %s", typ, got, err, want)
		}
	}
	// Each installed type answers VERSION through its link.
	for _, typ := range []string{"bridge", "macvlan", "host-local"} {
		cmd := exec.Command(filepath.Join(dir, typ))
		cmd.Env = []string{"CNI_COMMAND=VERSION"}
		cmd.Stdin = strings.NewReader(`{"cniVersion":"1.0.0"}`)
		if out, err := cmd.Output(); err != nil || !strings.Contains(string(out), "supportedVersions") {
			t.Fatalf("%s VERSION: %v %s", typ, err, out)
		}
	}
	r = e.ok("install", "--dir", dir, "--from", core)
	if strings.Count(r.stdout, "up to date") != 2 || !strings.Contains(r.stdout, "(0 new)") {
		t.Fatalf("second pair install: %s", r)
	}

	// A full build installed alone over the pair takes every link back and
	// removes the knit-plugin-extra nothing links to any more.
	_, plugins := binaries(t)
	e.ok("install", "--dir", dir, "--from", filepath.Join(plugins, pluginBinary))
	assertInstalled(t, dir, filepath.Join(plugins, pluginBinary), full)
	if _, err := os.Lstat(filepath.Join(dir, extraBinary)); !os.IsNotExist(err) {
		t.Fatalf("%s left behind after installing the full build alone (%v)", extraBinary, err)
	}
}
