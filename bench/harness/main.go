// Command harness benchmarks knit's plugins side by side with the reference
// plugins (Debian's containernetworking-plugins and upstream v1.10.0), all
// driven by the reference cnitool as the runtime, and writes a markdown
// table with knit ÷ reference ratios plus a PNG of the scale curve.
//
//	make bench                       # builds and installs everything, then runs this
//	go run ./bench/harness -knit DIR -new DIR -cnitool PATH [-quick] [-only single,burst,...]
//
// It measures single ADD/DEL latency for five networks (one of them two
// chained loopbacks: the floor of a two-plugin chain), 200-container
// bursts (sequential and 8-way), ADD/DEL latency with 10, 500 and 1,000
// containers attached to one bridge with portmap (a Linux bridge holds at
// most 1,024 ports, so 2,000 cannot be attached to one), the no-exec floor, peak
// RSS of one plugin exec, installed size, and iperf3 throughput against a
// bare veth pair. Suites take turns within each part so background load
// hits them alike.
//
// Everything runs in namespaces the harness makes: a private mount
// namespace (with fresh directories bind-mounted over /var/lib/cni and
// /run/knit), and per measurement a fresh "host" network namespace in which
// the plugins run. The real host's network and CNI state are not touched.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

var (
	knitDir    = flag.String("knit", "", "directory with knit's plugin links (knit install --dir)")
	debDir     = flag.String("deb", "/usr/lib/cni", "Debian's reference plugins (empty: skip the suite)")
	newDir     = flag.String("new", "", "upstream v1.10.0 reference plugins (empty: skip the suite)")
	cnitool    = flag.String("cnitool", "", "the reference cnitool v1.3.1")
	outDir     = flag.String("out", "bench/results", "directory for DATE.md and DATE.png")
	only       = flag.String("only", "single,burst,scale,floor,footprint,dataplane", "parts to run")
	samples    = flag.Int("samples", 30, "single-latency samples per repetition")
	reps       = flag.Int("reps", 3, "single-latency repetitions")
	burstN     = flag.Int("burst", 200, "containers per burst")
	burstReps  = flag.Int("burst-reps", 1, "burst repetitions")
	scaleSpec  = flag.String("scale", "10,500,1000", "attached-container levels (a Linux bridge takes at most 1024 ports)")
	scaleN     = flag.Int("scale-samples", 20, "ADD/DEL samples at each scale level")
	dpRounds   = flag.Int("dp-rounds", 5, "dataplane rounds")
	dpSeconds  = flag.Int("dp-seconds", 5, "iperf3 seconds per dataplane sample")
	quick      = flag.Bool("quick", false, "a fast smoke run: few samples, small bursts and levels")
	innerEnv   = "KNIT_BENCH_INNER"
	workerPool = 8
)

// maxBridgePorts is the kernel's limit on ports per bridge (BR_MAX_PORTS,
// 1 << 10), minus one for safety margin with the bridge's own port number 0.
const maxBridgePorts = 1023

func main() {
	if mode := os.Getenv(exitChildEnv); mode != "" {
		exitChild(mode)
	}
	flag.Parse()
	if os.Getenv(innerEnv) == "" {
		os.Exit(reexec())
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// reexec runs this program again in a private mount namespace, so the
// bind mounts it makes vanish with it whatever happens.
func reexec() int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench: run as root (it creates network namespaces)")
		return 1
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	cmd := exec.Command(self, os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), innerEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	return 0
}

func parts() map[string]bool {
	m := map[string]bool{}
	for _, p := range strings.Split(*only, ",") {
		m[strings.TrimSpace(p)] = true
	}
	return m
}

func run() error {
	if *knitDir == "" || *cnitool == "" {
		return fmt.Errorf("-knit and -cnitool are required (make bench sets them)")
	}
	levels := []int{}
	for _, f := range strings.Split(*scaleSpec, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("-scale: %q is not a positive count", f)
		}
		levels = append(levels, n)
	}
	if last := levels[len(levels)-1]; last+*scaleN > maxBridgePorts {
		return fmt.Errorf("-scale: %d attached plus %d probes exceed the %d ports a Linux bridge can hold (BR_MAX_PORTS): the kernel refuses more with EXFULL", last, *scaleN, maxBridgePorts)
	}
	if *quick {
		*samples, *reps, *burstN, *scaleN, *dpRounds, *dpSeconds = 8, 1, 40, 5, 1, 2
		levels = []int{10, 100}
	}
	ss := []suite{{name: "knit", label: "knit (this tree)", dir: *knitDir}}
	if *debDir != "" {
		ss = append(ss, suite{name: "deb", label: "Debian containernetworking-plugins 1.1.1", dir: *debDir})
	}
	if *newDir != "" {
		ss = append(ss, suite{name: "new", label: "upstream containernetworking/plugins v1.10.0", dir: *newDir})
	}
	for _, s := range ss {
		if _, err := os.Stat(filepath.Join(s.dir, "loopback")); err != nil {
			return fmt.Errorf("suite %s: no loopback plugin in %s: install the suite first", s.name, s.dir)
		}
	}
	l, err := setupLab(*cnitool)
	if err != nil {
		return err
	}
	defer l.close()

	want := parts()
	r := &results{start: time.Now(), loadStart: loadavg(), suites: ss, samples: *samples, reps: *reps}
	logf("suites: %v; load %s", ss, r.loadStart)
	if want["footprint"] {
		r.rss, r.sizes = map[string]*rssResult{}, map[string][2]int64{}
		for _, s := range ss {
			x, err := l.measureRSS(s, 5)
			if err != nil {
				return err
			}
			r.rss[s.name] = x
			five, err := installedSize(s.dir, []string{"bridge", "ptp", "loopback", "host-local", "portmap"})
			if err != nil {
				five, _ = installedSize(s.dir, []string{"bridge", "ptp", "loopback", "host-local"})
			}
			r.sizes[s.name] = [2]int64{five, dirSize(s.dir)}
			logf("footprint %-5s bridge ADD peak RSS %.1f MiB, size %.1f MiB", s.name, x.bridgeAdd/1024, float64(five)/(1<<20))
		}
	}
	// After each part the results so far are written, so an interrupted
	// run still leaves its figures.
	checkpoint := func() error {
		r.end, r.loadEnd = time.Now(), loadavg()
		r.targetVerdicts = r.verdicts()
		return r.write(*outDir, false)
	}
	if err := checkpoint(); err != nil {
		return err
	}
	if want["floor"] {
		if r.floor, err = l.measureFloor(ss[0], *samples); err != nil {
			return err
		}
		logf("floor: link ADD %.2f ms, link DEL %.2f ms, masq %.2f/%.2f ms, exec %.2f ms, plugin exec %.2f ms",
			median(r.floor.linkAdd), median(r.floor.linkDel), median(r.floor.masqAdd), median(r.floor.masqDel), median(r.floor.execTrue), median(r.floor.execPlugin))
	}
	if err := checkpoint(); err != nil {
		return err
	}
	if want["single"] {
		if r.single, err = l.measureSingle(ss, networks, *samples, *reps); err != nil {
			return err
		}
	}
	if err := checkpoint(); err != nil {
		return err
	}
	if want["burst"] {
		r.burstNets = []network{networkByKey("bridge"), networkByKey("portmap")}
		r.burstCount, r.burstWorkers = *burstN, []int{1, workerPool}
		if r.bursts, err = l.measureBursts(ss, r.burstNets, *burstN, r.burstWorkers, *burstReps); err != nil {
			return err
		}
	}
	if err := checkpoint(); err != nil {
		return err
	}
	if want["scale"] {
		r.scaleNet = networkByKey("portmap")
		if !ss[0].has(r.scaleNet) {
			r.scaleNet = networkByKey("bridge")
			logf("scale: knit has no portmap yet; measuring the bridge network instead")
		}
		if r.scale, err = l.measureScale(ss, r.scaleNet, levels, *scaleN, workerPool); err != nil {
			return err
		}
	}
	if err := checkpoint(); err != nil {
		return err
	}
	if want["dataplane"] {
		if _, err := exec.LookPath("iperf3"); err != nil {
			return fmt.Errorf("the dataplane part needs iperf3: apt-get install iperf3")
		}
		r.dpSeconds = *dpSeconds
		if r.dataplane, err = l.measureDataplane(ss, *dpRounds, *dpSeconds); err != nil {
			return err
		}
	}
	r.end, r.loadEnd = time.Now(), loadavg()
	r.targetVerdicts = r.verdicts()
	return r.write(*outDir, true)
}

// write puts DATE.md and DATE.png into dir; final also prints the table.
func (r *results) write(dir string, final bool) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	stamp := r.start.UTC().Format("2006-01-02")
	plotName := stamp + ".png"
	if r.scale != nil {
		var add, del []series
		for _, s := range r.suites {
			ps := r.scale[s.name]
			if len(ps) == 0 {
				continue
			}
			a := series{name: s.name, color: suiteColors[s.name]}
			d := a
			for _, p := range ps {
				a.xs, a.ys = append(a.xs, float64(p.attached)), append(a.ys, median(p.add))
				d.xs, d.ys = append(d.xs, float64(p.attached)), append(d.ys, median(p.del))
			}
			add, del = append(add, a), append(del, d)
		}
		if a, d, ok := floorSeries(r.scale[floorSuite]); ok {
			add, del = append(add, a), append(del, d)
		}
		title := "latency with n containers attached: " + r.scaleNet.label
		err := writePlot(filepath.Join(dir, plotName), title, []panel{
			{title: "ADD", xlabel: "containers attached (log)", ylabel: "median ms", series: add},
			{title: "DEL", xlabel: "containers attached (log)", ylabel: "median ms", series: del},
		})
		if err != nil {
			return err
		}
	}
	md := r.markdown(plotName)
	path := filepath.Join(dir, stamp+".md")
	if err := os.WriteFile(path, []byte(md), 0o644); err != nil {
		return err
	}
	if final {
		fmt.Print(md)
		logf("wrote %s", path)
	}
	return nil
}
