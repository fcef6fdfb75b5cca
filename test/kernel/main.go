// Command kernel is knit's kernel test harness (`make test-kernels`): it
// runs the plugin integration tests inside stock Debian kernels under qemu,
// because a CI machine's own kernel may lack ipvlan, 802.1q, dummy, vrf,
// bonding and the rest.
//
// For each kernel (Debian's 6.1 and 6.12 cloud images, fetched with
// apt-get download into a cache outside the repository, never installed)
// it builds an initramfs holding busybox, the kernel's networking modules,
// the test binaries (CGO_ENABLED=0 go test -c) and the knit-plugin
// directory; boots it with TCG emulation (KVM on nested-virt hosts cannot
// run stock kernels); reads the verdict from the serial console; and
// prints a go test-like summary per package and per kernel. It fails if a
// test fails, a guest does not finish, or a required test did not run.
//
//	go run ./test/kernel [-kernels 6.1,6.12] [-packages ./a,./b] [-run REGEXP] [-v]
//
// Needs root (apt-get, and the tests themselves build namespaces in the
// guest). Nothing runs on the host's network; temporary files live in one
// directory removed at exit; only the .deb cache stays
// ($KNIT_KERNEL_CACHE, default /var/cache/knit-kernels).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Packages are the test packages run in the guest by default: those whose
// tests need kernel features. Directories that do not exist yet are skipped
// with a note, so plugin packages can be listed before they land.
var Packages = []string{
	"./test/kernel/smoke",
	"./internal/kfeature",
	"./plugins/main/bridge",
	"./plugins/main/ipvlan",
	"./plugins/main/macvlan",
	"./plugins/main/vlan",
	"./plugins/main/dummy",
	"./plugins/main/host-device",
	"./plugins/main/hostdevice",
	"./plugins/main/ptp",
	"./plugins/main/tap",
	"./plugins/meta/vrf",
	"./plugins/meta/tuning",
	"./plugins/meta/bandwidth",
	"./plugins/meta/portmap",
	"./plugins/meta/firewall",
	"./plugins/meta/sbr",
}

var start = time.Now()

func logf(format string, args ...any) {
	fmt.Printf("[%5.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
}

type options struct {
	kernels  []string
	packages []string
	required []string
	run      string
	cache    string
	logDir   string
	timeout  time.Duration
	memory   int
	verbose  bool
}

func main() {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, nil)))
	var o options
	var kernels, pkgs, req string
	labels := make([]string, len(Kernels))
	for i, k := range Kernels {
		labels[i] = k.Label
	}
	flag.StringVar(&kernels, "kernels", strings.Join(labels, ","), "comma-separated kernels to boot, from: "+strings.Join(labels, ", "))
	flag.StringVar(&pkgs, "packages", strings.Join(Packages, ","), "comma-separated test packages to run in the guest")
	flag.StringVar(&req, "required", strings.Join(Required, ","), "comma-separated regexps: each must match a test that ran on every kernel")
	flag.StringVar(&o.run, "run", "", "passed to the test binaries as -test.run")
	flag.StringVar(&o.cache, "cache", envOr("KNIT_KERNEL_CACHE", "/var/cache/knit-kernels"), "directory caching the kernel .debs")
	flag.StringVar(&o.logDir, "log-dir", "", "keep each kernel's serial log in this directory")
	flag.DurationVar(&o.timeout, "timeout", 10*time.Minute, "limit for one boot, tests included")
	flag.IntVar(&o.memory, "m", 1536, "guest memory in MiB")
	flag.BoolVar(&o.verbose, "v", false, "stream the guests' serial output")
	flag.Parse()
	o.kernels, o.packages, o.required = split(kernels), split(pkgs), split(req)
	if o.run != "" && req == strings.Join(Required, ",") {
		o.required = nil // a -run selection would make the default requirements fail
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := 0
	if err := harness(ctx, &o); err != nil {
		fmt.Fprintf(os.Stderr, "test-kernels: %v\n", err)
		code = 1
	}
	stop()
	os.Exit(code)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func split(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// errTestsFailed means the harness ran and reported failures itself.
var errTestsFailed = errors.New("kernel tests failed")

func harness(ctx context.Context, o *options) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (apt-get for qemu and the kernels); run it with sudo")
	}
	for _, pat := range o.required {
		if _, err := regexp.Compile(pat); err != nil {
			return fmt.Errorf("-required %q: %w", pat, err)
		}
	}
	var ks []*kernel
	for _, l := range o.kernels {
		i := slices.IndexFunc(Kernels, func(k kernel) bool { return k.Label == l })
		if i < 0 {
			return fmt.Errorf("-kernels: unknown kernel %q (known: %v)", l, Kernels)
		}
		k := Kernels[i]
		ks = append(ks, &k)
	}
	root, err := repoRoot()
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "knit-kernels-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	a := &apt{}
	if err := a.ensureTools(ctx); err != nil {
		return err
	}
	for _, k := range ks {
		if err := a.resolve(ctx, k); err != nil {
			return err
		}
		if err := a.fetch(ctx, k, o.cache); err != nil {
			return err
		}
		if err := extract(ctx, k, filepath.Join(work, "kernel-"+k.Label)); err != nil {
			return err
		}
		logf("kernel %s: %s (%s)", k.Label, k.Release, filepath.Base(k.Deb))
	}

	p := &payload{SourceRoot: root}
	if p.Tests, err = buildTests(ctx, root, o.packages, filepath.Join(work, "tests")); err != nil {
		return err
	}
	if len(p.Tests) == 0 {
		return errors.New("no test binaries to run: none of -packages exists or has tests")
	}
	if p.PluginDir, err = buildPlugins(ctx, root, filepath.Join(work, "plugins")); err != nil {
		return err
	}
	if p.HelperDir, err = buildHelpers(ctx, root, filepath.Join(work, "helpers")); err != nil {
		return err
	}
	var want []string
	for _, t := range p.Tests {
		want = append(want, t.Package)
	}

	var passed, failed int
	var summaries []string
	for _, k := range ks {
		g, v, err := boot(ctx, o, k, p, work, want)
		if err != nil {
			return err
		}
		fmt.Println()
		v.print(os.Stdout, g, k.Label, o.required)
		f := v.Failed + len(v.Problems)
		passed += v.Passed
		failed += f
		summaries = append(summaries, fmt.Sprintf("kernel %s: %d passed, %d failed, %d skipped", k.Release, v.Passed, f, v.Skipped))
	}
	fmt.Println()
	for _, s := range summaries {
		fmt.Println(s)
	}
	logf("total wall time %s", time.Since(start).Round(time.Second))
	fmt.Printf("%d passed, %d failed\n", passed, failed)
	if failed > 0 {
		return errTestsFailed
	}
	return nil
}

// repoRoot is the module root: the harness runs as `go run ./test/kernel`
// from it, but any directory inside the module works.
func repoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run the harness from inside the knit module (go run ./test/kernel)")
	}
	return filepath.Dir(mod), nil
}

// testBinary is one compiled test package.
type testBinary struct {
	Package string // "test/kernel/smoke", relative to the repository
	Binary  string
}

// buildTests compiles each package's tests as a static binary.
func buildTests(ctx context.Context, root string, pkgs []string, dir string) ([]testBinary, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var out []testBinary
	for _, pkg := range pkgs {
		rel := filepath.Clean(strings.TrimPrefix(pkg, "./"))
		if fi, err := os.Stat(filepath.Join(root, rel)); err != nil || !fi.IsDir() {
			logf("note: %s does not exist yet, skipped", pkg)
			continue
		}
		if tests, _ := filepath.Glob(filepath.Join(root, rel, "*_test.go")); len(tests) == 0 {
			logf("note: %s has no tests yet, skipped", pkg)
			continue
		}
		bin := filepath.Join(dir, strings.ReplaceAll(rel, "/", "_")+".test")
		// Stripped (stack traces keep file:line): the binaries dominate the
		// initramfs, and its size dominates boot time under emulation.
		cmd := exec.CommandContext(ctx, "go", "test", "-c", "-ldflags=-s -w", "-o", bin, "./"+rel)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("building tests of %s: %v\n%s", pkg, err, b)
		}
		if _, err := os.Stat(bin); err != nil {
			logf("note: %s has no tests, skipped", pkg)
			continue
		}
		out = append(out, testBinary{Package: rel, Binary: bin})
	}
	logf("built %d test binaries", len(out))
	return out, nil
}

// buildPlugins builds the multi-call plugin binary with a link per type.
func buildPlugins(ctx context.Context, root, dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "knit-plugin")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./cmd/knit-plugin")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building cmd/knit-plugin: %v\n%s", err, b)
	}
	// --list only prints the registered types; it touches no network state.
	list, err := run(ctx, "", bin, "--list")
	if err != nil {
		return "", err
	}
	types := strings.Fields(list)
	for _, t := range types {
		if err := os.Symlink("knit-plugin", filepath.Join(dir, t)); err != nil {
			return "", err
		}
	}
	logf("built knit-plugin with types: %s", strings.Join(types, " "))
	return dir, nil
}

// boot builds k's initramfs, runs the guest and checks its serial log.
func boot(ctx context.Context, o *options, k *kernel, p *payload, work string, want []string) (*guestReport, *verdict, error) {
	st := filepath.Join(work, "stage-"+k.Label)
	nmods, err := stage(ctx, k, p, st)
	if err != nil {
		return nil, nil, fmt.Errorf("kernel %s: building the initramfs tree: %w", k.Label, err)
	}
	initrd := filepath.Join(work, "initrd-"+k.Label+".gz")
	size, err := writeInitramfs(st, initrd)
	if err != nil {
		return nil, nil, fmt.Errorf("kernel %s: packing the initramfs: %w", k.Label, err)
	}
	os.RemoveAll(st)
	logf("kernel %s: initramfs %.1f MB with %d modules; booting", k.Label, float64(size)/1e6, nmods)

	logPath := filepath.Join(work, "serial-"+k.Label+".log")
	if o.logDir != "" {
		if err := os.MkdirAll(o.logDir, 0o755); err != nil {
			return nil, nil, err
		}
		logPath = filepath.Join(o.logDir, "serial-"+k.Release+".log")
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, nil, err
	}
	defer logFile.Close()

	testArgs := ""
	if o.run != "" {
		testArgs = "-test.run " + o.run
	}
	appendLine := strings.Join([]string{
		"console=ttyS0", "panic=-1", "quiet", "loglevel=3",
		"dummy.numdummies=0", "bonding.max_bonds=0", // no stray dummy0/bond0 on module load
		"testtimeout=" + (o.timeout - 30*time.Second).String(),
		`testargs="` + testArgs + `"`,
	}, " ")
	bctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	// TCG only: the KVM some CI hosts offer (kvm_pvm) cannot run stock
	// kernels. No microvm: the Debian kernel prints nothing there.
	// thread=single: with multi-threaded TCG, the kernel's live code
	// patching (static keys flipped when a module such as bridge loads)
	// raced with the other vCPU and oopsed on the int3 it plants
	// (get_random_u32+0x2a, seen once on 6.12); one TCG thread running both
	// vCPUs in turn keeps cross-vCPU code changes coherent.
	cmd := exec.CommandContext(bctx, "qemu-system-x86_64",
		"-accel", "tcg,thread=single", "-m", fmt.Sprint(o.memory), "-smp", "2",
		"-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot",
		"-kernel", k.Vmlinuz, "-initrd", initrd, "-append", appendLine)
	cmd.Stdin = nil
	var sink io.Writer = logFile
	if o.verbose {
		sink = io.MultiWriter(logFile, &prefixWriter{w: os.Stdout, prefix: "[" + k.Label + "] "})
	} else {
		sink = io.MultiWriter(logFile, &prefixWriter{w: os.Stdout, prefix: "[" + k.Label + "] ", filter: milestone})
	}
	cmd.Stdout, cmd.Stderr = sink, sink
	cmd.WaitDelay = 5 * time.Second
	t0 := time.Now()
	runErr := cmd.Run()
	logf("kernel %s: guest ran %s (qemu: %v)", k.Label, time.Since(t0).Round(100*time.Millisecond), exitText(runErr))
	if ctx.Err() != nil {
		return nil, nil, ctx.Err()
	}
	if _, err := logFile.Seek(0, io.SeekStart); err != nil {
		return nil, nil, err
	}
	g, err := parseSerial(logFile)
	if err != nil {
		return nil, nil, fmt.Errorf("reading the serial log: %w", err)
	}
	if g.Release != "" && g.Release != k.Release {
		return nil, nil, fmt.Errorf("kernel %s: guest reports release %s, expected %s", k.Label, g.Release, k.Release)
	}
	v := check(g, want, o.required)
	if bctx.Err() != nil {
		v.Problems = append(v.Problems, fmt.Sprintf("guest did not power off within -timeout %s", o.timeout))
	}
	if !v.ok() && !o.verbose {
		fmt.Printf("--- serial log of kernel %s (last 200 lines) ---\n", k.Release)
		tail(os.Stdout, logPath, 200)
	}
	return g, v, nil
}

func exitText(err error) string {
	if err == nil {
		return "exit 0"
	}
	return err.Error()
}
