package e2e

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// setupSandbox runs first in the sandboxed process (its own mount, network
// and PID namespaces): it makes every directory the runtimes write to
// private, shows this namespace's interfaces in /sys, brings up loopback and
// installs the knit plugins with `knit install`.
func setupSandbox() error {
	scratch := os.Getenv(envScratch)
	if err := unix.Mount("tmpfs", scratch, "tmpfs", 0, "mode=0755"); err != nil {
		return fmt.Errorf("tmpfs on %s: %w", scratch, err)
	}
	if err := remountSys(scratch); err != nil {
		return err
	}
	// Empty private directories: runtimes' state, configs, caches.
	if err := privateDirs(scratch, "/run", "/etc/cni/net.d", "/var/lib/cni", "/var/lib/containers", "/var/lib/containerd", "/var/tmp"); err != nil {
		return err
	}
	// /opt keeps its contents; /opt/cni/bin is created in the overlay.
	if err := overlay(scratch, "/opt"); err != nil {
		return err
	}
	if err := os.MkdirAll(pluginDir, 0o755); err != nil {
		return err
	}
	if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		return fmt.Errorf("loopback up: %v: %s", err, out)
	}
	bin := os.Getenv(envBin)
	out, err := exec.Command(filepath.Join(bin, "knit"), "install", "--dir", pluginDir,
		"--from", filepath.Join(bin, "knit-plugin")).CombinedOutput()
	if err != nil {
		return fmt.Errorf("knit install: %v: %s", err, out)
	}
	fmt.Printf("e2e: sandbox ready; %s", out)
	return nil
}

// remountSys mounts a sysfs of the sandbox's network namespace over /sys
// (as `ip netns exec` does) but keeps the cgroup hierarchy, which runc needs.
func remountSys(scratch string) error {
	stash := filepath.Join(scratch, "cgroup")
	if err := os.MkdirAll(stash, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("/sys/fs/cgroup", stash, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("binding /sys/fs/cgroup aside: %w", err)
	}
	if err := unix.Mount("sysfs", "/sys", "sysfs", 0, ""); err != nil {
		return fmt.Errorf("mounting the namespace's sysfs: %w", err)
	}
	if err := unix.Mount(stash, "/sys/fs/cgroup", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("moving the cgroup hierarchy back under /sys: %w", err)
	}
	return nil
}

// privateDirs makes each dir private to the sandbox, an empty tmpfs. A dir
// that does not exist is made inside an overlay of its nearest existing
// parent (whose writes land in scratch), so the real file system does not
// get it either. The overlays come first so that they do not hide the
// tmpfs mounts.
func privateDirs(scratch string, dirs ...string) error {
	overlaid := map[string]bool{}
	for _, dir := range dirs {
		if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
			continue
		}
		parent := filepath.Dir(dir)
		for {
			if _, err := os.Stat(parent); err == nil {
				break
			}
			parent = filepath.Dir(parent)
		}
		if !overlaid[parent] {
			if err := overlay(scratch, parent); err != nil {
				return err
			}
			overlaid[parent] = true
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	for _, dir := range dirs {
		if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "mode=0755"); err != nil {
			return fmt.Errorf("tmpfs on %s: %w", dir, err)
		}
	}
	return nil
}

// overlay mounts an overlay on dir with dir as its lower layer.
func overlay(scratch, dir string) error {
	base := filepath.Join(scratch, "overlay", strings.ReplaceAll(strings.Trim(dir, "/"), "/", "_"))
	upper, work := filepath.Join(base, "upper"), filepath.Join(base, "work")
	for _, d := range []string{upper, work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", dir, upper, work)
	if err := unix.Mount("overlay", dir, "overlay", 0, opts); err != nil {
		return fmt.Errorf("overlay on %s: %w", dir, err)
	}
	return nil
}

// snapshot is the host state the e2e run must leave as it found it, one
// list of normalised lines per section.
type snapshot map[string][]string

// section says what to record and which differences count: nil ours means
// every difference, otherwise only lines ours accepts (directories other
// tests share at the same time).
type section struct {
	name string
	read func() ([]string, error)
	ours func(string) bool
}

var volatile = regexp.MustCompile(`(packets \d+ bytes \d+|expires \S+|used \S+)`)

func command(name string, args ...string) func() ([]string, error) {
	return func() ([]string, error) {
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
		}
		var lines []string
		for _, l := range strings.Split(string(out), "\n") {
			if l = strings.TrimSpace(volatile.ReplaceAllString(l, "")); l != "" {
				lines = append(lines, l)
			}
		}
		return lines, nil
	}
}

// brief keeps the name and the addresses of `ip -br` lines, not the state.
func brief(read func() ([]string, error)) func() ([]string, error) {
	return func() ([]string, error) {
		lines, err := read()
		for i, l := range lines {
			if f := strings.Fields(l); len(f) >= 2 {
				lines[i] = strings.Join(append([]string{f[0]}, f[2:]...), " ")
			}
		}
		return lines, err
	}
}

// tree lists the entries under root down to depth (0: unlimited), with
// their type and, for files, size.
func tree(root string, depth int) func() ([]string, error) {
	return func() ([]string, error) {
		var lines []string
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			if depth > 0 && strings.Count(strings.TrimPrefix(p, root), "/") > depth {
				return fs.SkipDir
			}
			line := p + " " + d.Type().String()
			if d.Type().IsRegular() {
				if info, err := d.Info(); err == nil {
					line += fmt.Sprintf(" %d", info.Size())
				}
			}
			lines = append(lines, line)
			return nil
		})
		return lines, err
	}
}

func mentionsUs(line string) bool {
	return strings.Contains(line, marker) || strings.Contains(line, "/netns-") || strings.Contains(line, "cni-")
}

func runtimeState(line string) bool {
	// Not /run/cni: other engineers' plugin tests share it on this machine.
	for _, n := range []string{"containerd", "containers", "libpod", "runc", "crun", "podman", "netns/netns-", marker} {
		if strings.Contains(line, "/run/"+n) {
			return true
		}
	}
	return false
}

var sections = []section{
	{"link", brief(command("ip", "-br", "link")), nil},
	{"addr", brief(command("ip", "-br", "addr")), nil},
	{"route", command("ip", "route", "show", "table", "all"), nil},
	{"route6", command("ip", "-6", "route", "show", "table", "all"), nil},
	{"nft", command("nft", "list", "ruleset"), nil},
	{"/etc/cni", tree("/etc/cni", 0), nil},
	{"/etc/containers", tree("/etc/containers", 0), nil},
	{"/opt", tree("/opt", 1), nil},
	{"/opt/cni", tree("/opt/cni", 0), nil},
	{"/var/lib/containers", tree("/var/lib/containers", 0), nil},
	{"/var/lib/containerd", tree("/var/lib/containerd", 0), nil},
	{"/var/lib/cni", tree("/var/lib/cni", 0), mentionsUs},
	{"/run", tree("/run", 2), runtimeState},
	{"cgroup", func() ([]string, error) { return cgroupDirs(), nil }, nil},
}

func takeSnapshot() (snapshot, error) {
	s := snapshot{}
	for _, sec := range sections {
		lines, err := sec.read()
		if err != nil {
			return nil, err
		}
		s[sec.name] = lines
	}
	return s, nil
}

// diff lists what changed between s and after, as "section: -line" (gone)
// and "section: +line" (new).
func (s snapshot) diff(after snapshot) []string {
	var out []string
	for _, sec := range sections {
		b, a := s[sec.name], after[sec.name]
		for _, l := range b {
			if !slices.Contains(a, l) && (sec.ours == nil || sec.ours(l)) {
				out = append(out, sec.name+": -"+l)
			}
		}
		for _, l := range a {
			if !slices.Contains(b, l) && (sec.ours == nil || sec.ours(l)) {
				out = append(out, sec.name+": +"+l)
			}
		}
	}
	return out
}

// cgroupDirs lists the cgroups the runtimes may create at the top of each
// hierarchy: Podman's libpod_parent (cgroupfs manager) and containerd's
// per-namespace parent, which is named after our marker.
func cgroupDirs() []string {
	var out []string
	matches, _ := filepath.Glob("/sys/fs/cgroup/*/*")
	for _, m := range matches {
		base := filepath.Base(m)
		if base != "libpod_parent" && !strings.HasPrefix(base, marker) {
			continue
		}
		if fi, err := os.Stat(m); err == nil && fi.IsDir() {
			out = append(out, m)
		}
	}
	return out
}

// removeNewCgroups removes the (empty) cgroups the run created and that
// were not there before, deepest first; rmdir fails on a cgroup that still
// has processes, which is then reported by the snapshot check.
func removeNewCgroups(before []string) {
	for _, top := range cgroupDirs() {
		if slices.Contains(before, top) {
			continue
		}
		var dirs []string
		_ = filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			_ = unix.Rmdir(dirs[i])
		}
	}
}
