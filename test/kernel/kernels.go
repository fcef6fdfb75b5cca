package main

import (
	"bufio"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// kernel is one Debian kernel the harness boots: a meta package whose
// dependency names the real, ABI-numbered image package.
type kernel struct {
	Label string // short name for flags and output, e.g. "6.1"
	Meta  string // Debian meta package, e.g. linux-image-cloud-amd64

	Package string // resolved image package
	Deb     string // cached .deb
	Root    string // dpkg -x tree
	Release string // uname -r, the lib/modules directory name
	Vmlinuz string
}

// Kernels are the kernels `make test-kernels` boots by default: Debian's
// cloud flavour (smallest download, fastest boot under emulation) of the
// stable 6.1 series and of the 6.12 backport.
var Kernels = []kernel{
	{Label: "6.1", Meta: "linux-image-cloud-amd64"},
	{Label: "6.12", Meta: "linux-image-6.12-cloud-amd64"},
}

// hostTools are the commands the harness runs on the host and the Debian
// packages that provide them.
var hostTools = []struct{ cmd, pkg string }{
	{"qemu-system-x86_64", "qemu-system-x86"},
	{"busybox", "busybox-static"},
	{"xz", "xz-utils"},
}

// run runs a command, returning its stdout; on failure the error carries
// its stderr.
func run(ctx context.Context, dir string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// aptUpdated makes sure apt-get update runs at most once per harness run.
type apt struct{ updated bool }

func (a *apt) update(ctx context.Context) error {
	if a.updated {
		return nil
	}
	a.updated = true
	logf("apt-get update")
	_, err := run(ctx, "", "apt-get", "update", "-q")
	return err
}

// ensureTools installs the Debian packages for any missing host tool. The
// busybox must be the static one: it runs as the guest's userland.
func (a *apt) ensureTools(ctx context.Context) error {
	var missing []string
	for _, t := range hostTools {
		p, err := exec.LookPath(t.cmd)
		if err == nil && t.cmd == "busybox" && !isStatic(p) {
			err = errors.New("dynamically linked")
		}
		if err != nil {
			missing = append(missing, t.pkg)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	args := append([]string{"install", "-y", "-q", "--no-install-recommends"}, missing...)
	logf("installing %s", strings.Join(missing, " "))
	if _, err := run(ctx, "", "apt-get", args...); err != nil {
		if uerr := a.update(ctx); uerr != nil {
			return fmt.Errorf("installing %s failed (%v) and so did apt-get update: %w", strings.Join(missing, " "), err, uerr)
		}
		if _, err := run(ctx, "", "apt-get", args...); err != nil {
			return fmt.Errorf("installing the harness's host tools: %w", err)
		}
	}
	return nil
}

// isStatic reports whether the ELF file at path has no program interpreter.
func isStatic(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}

// resolve finds the image package the meta package depends on right now
// (the ABI number changes with every point release, so it is never
// hard-coded).
func (a *apt) resolve(ctx context.Context, k *kernel) error {
	for attempt := 0; ; attempt++ {
		out, err := run(ctx, "", "apt-cache", "depends", "--important", k.Meta)
		if err == nil {
			sc := bufio.NewScanner(strings.NewReader(out))
			for sc.Scan() {
				f := strings.Fields(sc.Text())
				if len(f) == 2 && f[0] == "Depends:" && strings.HasPrefix(f[1], "linux-image-") {
					k.Package = f[1]
					return nil
				}
			}
			err = fmt.Errorf("apt-cache depends %s names no linux-image-* dependency", k.Meta)
		}
		if attempt > 0 {
			return fmt.Errorf("resolving kernel %s (%s): %w; check the apt sources (bookworm and bookworm-security)", k.Label, k.Meta, err)
		}
		if uerr := a.update(ctx); uerr != nil {
			return fmt.Errorf("resolving kernel %s: %v; apt-get update: %w", k.Label, err, uerr)
		}
	}
}

// fetch puts the image package's .deb into cache unless it is there.
func (a *apt) fetch(ctx context.Context, k *kernel, cache string) error {
	pattern := filepath.Join(cache, k.Package+"_*_amd64.deb")
	if debs, _ := filepath.Glob(pattern); len(debs) > 0 {
		sort.Strings(debs)
		k.Deb = debs[len(debs)-1]
		return nil
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return fmt.Errorf("kernel cache: %w", err)
	}
	logf("downloading %s into %s", k.Package, cache)
	if _, err := run(ctx, cache, "apt-get", "download", "-q", k.Package); err != nil {
		if uerr := a.update(ctx); uerr != nil {
			return err
		}
		if _, err := run(ctx, cache, "apt-get", "download", "-q", k.Package); err != nil {
			return fmt.Errorf("downloading kernel %s: %w", k.Label, err)
		}
	}
	debs, _ := filepath.Glob(pattern)
	if len(debs) == 0 {
		return fmt.Errorf("apt-get download %s left no %s", k.Package, pattern)
	}
	sort.Strings(debs)
	k.Deb = debs[len(debs)-1]
	return nil
}

// extract unpacks the .deb (never into /boot: into dir) and generates the
// modules.dep the package leaves to its postinst.
func extract(ctx context.Context, k *kernel, dir string) error {
	k.Root = dir
	if _, err := run(ctx, "", "dpkg-deb", "-x", k.Deb, dir); err != nil {
		return err
	}
	rels, err := os.ReadDir(filepath.Join(dir, "lib", "modules"))
	if err != nil || len(rels) != 1 {
		return fmt.Errorf("%s: expected exactly one lib/modules/<release> (%v)", k.Deb, err)
	}
	k.Release = rels[0].Name()
	k.Vmlinuz = filepath.Join(dir, "boot", "vmlinuz-"+k.Release)
	if _, err := os.Stat(k.Vmlinuz); err != nil {
		return fmt.Errorf("%s has no kernel image: %w", k.Deb, err)
	}
	if _, err := run(ctx, "", "busybox", "depmod", "-b", dir, k.Release); err != nil {
		return fmt.Errorf("generating modules.dep for %s: %w", k.Release, err)
	}
	return nil
}
