package main

import (
	"bufio"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// Modules are the kernel modules put into every initramfs, as module names
// or path.Match patterns ('-' and '_' are the same). Their dependencies come
// along. The kernel loads them on demand through /sbin/modprobe (busybox)
// when a test asks for a link kind, a netlink family or an nftables
// expression.
var Modules = []string{
	// link kinds
	"dummy", "veth", "bridge", "br_netfilter", "8021q", "ipvlan", "ipvtap", "macvlan", "macvtap",
	"vrf", "bonding", "vxlan", "geneve", "wireguard", "tun", "ifb",
	// netlink families netlink.NewHandleAt opens without a family list
	"xfrm_user", "nfnetlink",
	// nftables and iptables for the NAT/firewall/portmap plugins
	"nf_*", "nft_*", "xt_*", "iptable_*", "ip6table_*", "ipt_*", "ip6t_*",
	// traffic control for bandwidth and friends
	"sch_*", "cls_*", "act_*",
	// soft dependencies modules.dep does not record (libcrc32c for nf_tables)
	"crc32c_generic", "crc32c_intel",
}

// depGraph maps a module's path relative to lib/modules/<release> to the
// paths it depends on, from modules.dep.
type depGraph map[string][]string

func readDeps(file string) (depGraph, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	g := depGraph{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		mod, deps, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		g[mod] = strings.Fields(deps)
	}
	return g, sc.Err()
}

// modName turns "kernel/net/8021q/8021q.ko.xz" into "8021q" and
// "crc32c-intel" into "crc32c_intel".
func modName(p string) string {
	b := path.Base(p)
	if i := strings.Index(b, ".ko"); i >= 0 {
		b = b[:i]
	}
	return strings.ReplaceAll(b, "-", "_")
}

// closure returns the module paths matching the patterns plus everything
// they depend on, sorted; patterns matching nothing are returned too, for
// the caller to report.
func (g depGraph) closure(patterns []string) (mods []string, unmatched []string) {
	seen := map[string]bool{}
	var visit func(string)
	visit = func(p string) {
		if seen[p] {
			return
		}
		seen[p] = true
		for _, d := range g[p] {
			visit(d)
		}
	}
	all := make([]string, 0, len(g))
	for p := range g {
		all = append(all, p)
	}
	sort.Strings(all)
	for _, pat := range patterns {
		pat = strings.ReplaceAll(pat, "-", "_")
		hit := false
		for _, p := range all {
			if ok, _ := path.Match(pat, modName(p)); ok {
				visit(p)
				hit = true
			}
		}
		if !hit {
			unmatched = append(unmatched, pat)
		}
	}
	for p := range seen {
		mods = append(mods, p)
	}
	sort.Strings(mods)
	return mods, unmatched
}

// guestInit is the initramfs's /init: it mounts the pseudo filesystems,
// runs every test binary listed in /knit/tests.list from its package's
// source directory (for testdata), prints a marker around each, and ends
// with the verdict marker the host parses. qemu's exit code carries
// nothing (the cloud kernel has no /dev/port for isa-debug-exit).
const guestInit = `#!/bin/sh
export PATH=/bin:/sbin:/knit/bin HOME=/root TMPDIR=/tmp
export KNIT_IN_KERNEL_VM=1 KNIT_PLUGIN_DIR=/knit/plugins
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm && mount -t devpts devpts /dev/pts && mount -t tmpfs shm /dev/shm
mount -t tmpfs tmp /tmp
mount -t tmpfs run /run
mkdir -p /run/netns /dev/net
# No udev: make the node whose first open autoloads tun (char-major-10-200),
# as kmod's static-nodes does on a real system.
[ -e /dev/net/tun ] || mknod /dev/net/tun c 10 200
ip link set lo up
ARGS=$(sed -n 's/.*testargs="\([^"]*\)".*/\1/p' /proc/cmdline)
TIMEOUT=$(sed -n 's/.*testtimeout=\([^ ]*\).*/\1/p' /proc/cmdline)
echo "=== KNIT GUEST kernel=$(uname -r) cpus=$(nproc) uptime=$(cut -d' ' -f1 /proc/uptime)s"
failed=0
while read -r pkg bin; do
	echo "=== PACKAGE $pkg START"
	(cd "/knit/src/$pkg" && exec "/knit/tests/$bin" -test.v -test.timeout="${TIMEOUT:-5m}" $ARGS) </dev/null 2>&1
	rc=$?
	echo "=== PACKAGE $pkg EXIT rc=$rc uptime=$(cut -d' ' -f1 /proc/uptime)s"
	[ "$rc" = 0 ] || failed=$((failed + 1))
done < /knit/tests.list
echo "=== TEST EXIT rc=$failed uptime=$(cut -d' ' -f1 /proc/uptime)s"
sync
poweroff -f
`

// payload is what goes into every initramfs besides the kernel's modules.
type payload struct {
	Tests      []testBinary
	PluginDir  string // holds knit-plugin and one link per type
	HelperDir  string // helper binaries for /knit/bin (cnitool, the go shim)
	SourceRoot string // repository root, for testdata directories
}

// stage builds the initramfs tree for k under dir.
func stage(ctx context.Context, k *kernel, p *payload, dir string) (nmods int, err error) {
	for _, d := range []string{"bin", "sbin", "proc", "sys", "dev", "tmp", "run", "root", "etc",
		"var/lib/cni", "knit/tests", "knit/plugins", "knit/src", "knit/bin"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return 0, err
		}
	}
	if err := os.Symlink("../run", filepath.Join(dir, "var", "run")); err != nil {
		return 0, err
	}
	// busybox and its applets (the list includes "busybox" itself: linking
	// that would replace the binary with a symlink to itself).
	bb, err := findBusybox()
	if err != nil {
		return 0, err
	}
	if err := copyFile(bb, filepath.Join(dir, "bin", "busybox"), 0o755); err != nil {
		return 0, err
	}
	list, err := run(ctx, "", bb, "--list")
	if err != nil {
		return 0, err
	}
	for _, a := range strings.Fields(list) {
		if a == "busybox" || strings.Contains(a, "/") {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", a)); err != nil && !os.IsExist(err) {
			return 0, err
		}
	}
	// The kernel's request_module() runs /sbin/modprobe.
	if err := os.Symlink("../bin/busybox", filepath.Join(dir, "sbin", "modprobe")); err != nil {
		return 0, err
	}
	for name, body := range map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\n",
		"etc/group":  "root:x:0:\n",
		"etc/hosts":  "127.0.0.1 localhost\n::1 localhost\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			return 0, err
		}
	}
	if nmods, err = stageModules(ctx, k, dir); err != nil {
		return 0, err
	}
	if err := copyTree(p.PluginDir, filepath.Join(dir, "knit", "plugins")); err != nil {
		return 0, err
	}
	if err := copyTree(p.HelperDir, filepath.Join(dir, "knit", "bin")); err != nil {
		return 0, err
	}
	var listing strings.Builder
	for _, t := range p.Tests {
		if err := copyFile(t.Binary, filepath.Join(dir, "knit", "tests", filepath.Base(t.Binary)), 0o755); err != nil {
			return 0, err
		}
		src := filepath.Join(dir, "knit", "src", t.Package)
		if err := os.MkdirAll(src, 0o755); err != nil {
			return 0, err
		}
		td := filepath.Join(p.SourceRoot, t.Package, "testdata")
		if _, err := os.Stat(td); err == nil {
			if err := copyTree(td, filepath.Join(src, "testdata")); err != nil {
				return 0, err
			}
		}
		fmt.Fprintf(&listing, "%s %s\n", t.Package, filepath.Base(t.Binary))
	}
	if err := os.WriteFile(filepath.Join(dir, "knit", "tests.list"), []byte(listing.String()), 0o644); err != nil {
		return 0, err
	}
	return nmods, os.WriteFile(filepath.Join(dir, "init"), []byte(guestInit), 0o755)
}

func findBusybox() (string, error) {
	for _, c := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if isStatic(c) {
			return c, nil
		}
	}
	return "", fmt.Errorf("no statically linked busybox: apt-get install busybox-static")
}

// stageModules copies (decompressing) the wanted modules and their
// dependencies and runs depmod over the subset for modules.dep/alias.
func stageModules(ctx context.Context, k *kernel, dir string) (int, error) {
	src := filepath.Join(k.Root, "lib", "modules", k.Release)
	dst := filepath.Join(dir, "lib", "modules", k.Release)
	g, err := readDeps(filepath.Join(src, "modules.dep"))
	if err != nil {
		return 0, fmt.Errorf("reading modules.dep of %s: %w", k.Release, err)
	}
	mods, unmatched := g.closure(Modules)
	for _, u := range unmatched {
		// Builtin on some flavours (crc32c on cloud), absent on others.
		if !builtin(src, u) {
			logf("kernel %s: no module matches %q (not built in either)", k.Label, u)
		}
	}
	for _, m := range mods {
		out := filepath.Join(dst, m)
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			return 0, err
		}
		switch {
		case strings.HasSuffix(m, ".xz"):
			err = decompress(ctx, "xz", filepath.Join(src, m), strings.TrimSuffix(out, ".xz"))
		case strings.HasSuffix(m, ".zst"):
			err = decompress(ctx, "zstd", filepath.Join(src, m), strings.TrimSuffix(out, ".zst"))
		default:
			err = copyFile(filepath.Join(src, m), out, 0o644)
		}
		if err != nil {
			return 0, fmt.Errorf("staging module %s: %w", m, err)
		}
	}
	for _, f := range []string{"modules.builtin", "modules.builtin.modinfo", "modules.order"} {
		if err := copyFile(filepath.Join(src, f), filepath.Join(dst, f), 0o644); err != nil && !os.IsNotExist(err) {
			return 0, err
		}
	}
	if _, err := run(ctx, "", "busybox", "depmod", "-b", dir, k.Release); err != nil {
		return 0, fmt.Errorf("depmod over the initramfs modules: %w", err)
	}
	return len(mods), nil
}

func builtin(modDir, pattern string) bool {
	data, err := os.ReadFile(filepath.Join(modDir, "modules.builtin"))
	if err != nil {
		return false
	}
	for _, l := range strings.Fields(string(data)) {
		if ok, _ := path.Match(pattern, modName(l)); ok {
			return true
		}
	}
	return false
}

func decompress(ctx context.Context, tool, from, to string) error {
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, tool, "-dc", from)
	cmd.Stdout = out
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err = cmd.Run()
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%s -dc %s: %v %s", tool, from, err, stderr.String())
	}
	return nil
}

func copyFile(from, to string, mode os.FileMode) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// copyTree copies regular files, directories and symlinks.
func copyTree(from, to string) error {
	return filepath.Walk(from, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		switch {
		case fi.IsDir():
			return os.MkdirAll(dst, 0o755)
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(target, dst)
		default:
			return copyFile(p, dst, fi.Mode().Perm())
		}
	})
}

// writeInitramfs packs dir as a gzip-compressed newc cpio archive.
func writeInitramfs(dir, out string) (int64, error) {
	f, err := os.Create(out)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	zw, err := gzip.NewWriterLevel(f, gzip.BestSpeed)
	if err != nil {
		return 0, err
	}
	if err := writeCpio(zw, dir); err != nil {
		return 0, err
	}
	if err := zw.Close(); err != nil {
		return 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), f.Close()
}
