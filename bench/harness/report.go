package main

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// results is everything one run measured; nil parts were not run.
type results struct {
	start, end     time.Time
	loadStart      string
	loadEnd        string
	suites         []suite
	samples, reps  int
	single         map[string]map[string]*latency
	bursts         map[string][]burst
	burstNets      []network
	burstCount     int
	burstWorkers   []int
	scale          map[string][]scalePoint
	scaleNet       network
	floor          *floorResult
	rss            map[string]*rssResult
	sizes          map[string][2]int64 // measured five types, whole dir
	dataplane      map[string][]float64
	dpSeconds      int
	targetVerdicts []string
}

func machine() string {
	kernel, _ := exec.Command("uname", "-r").Output()
	model := "?"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, ln := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(ln, "model name") {
				model = strings.TrimSpace(strings.SplitN(ln, ":", 2)[1])
				break
			}
		}
	}
	mem := "?"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		f := strings.Fields(string(b))
		if len(f) > 1 {
			var kb float64
			fmt.Sscan(f[1], &kb)
			mem = fmt.Sprintf("%.0f GiB", kb/1024/1024)
		}
	}
	return fmt.Sprintf("%d CPUs (%s), %s RAM, kernel %s, %s", runtime.NumCPU(), model, mem, strings.TrimSpace(string(kernel)), runtime.Version())
}

// ratio formats how many times faster knit is than ref (ref/knit).
func ratio(ref, knit float64) string {
	if ref == 0 || knit == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f×", ref/knit)
}

func cell(xs []float64, prec int) string {
	if len(xs) == 0 {
		return "—"
	}
	f := "%." + fmt.Sprint(prec) + "f"
	return fmt.Sprintf(f+" ("+f+")", median(xs), p90(xs))
}

func (r *results) markdown(plotName string) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("# knit benchmark, %s\n\n", r.start.UTC().Format("2006-01-02 15:04 UTC"))
	p("Machine: %s. Load average (1 min) %s at start, %s at the end; the machine was shared, so compare suites only within this run (single ADD/DEL samples interleave suite by suite; the other parts take turns).\n\n", machine(), r.loadStart, r.loadEnd)
	p("Suites, all driven by the reference `cnitool` v1.3.1 as the runtime (so only plugin cost differs), each sample in a fresh container netns inside a bench-made host netns:\n\n")
	for _, s := range r.suites {
		p("- `%s`: %s (`%s`)\n", s.name, s.label, s.dir)
	}
	p("\nRatios are reference time ÷ knit time: above 1× knit is faster.\n\n")

	if r.single != nil {
		p("## Single ADD / DEL latency, ms: median (p90) of %d samples (%d repetitions × %d)\n\n", r.samples*r.reps, r.reps, r.samples)
		p("| network | op | knit | deb | new | deb ÷ knit | new ÷ knit | knit per-rep medians |\n|---|---|---|---|---|---|---|---|\n")
		for _, n := range networks {
			for _, op := range []string{"ADD", "DEL"} {
				get := func(s string) []float64 {
					lt := r.single[s][n.key]
					if lt == nil {
						return nil
					}
					if op == "ADD" {
						return lt.add
					}
					return lt.del
				}
				reps := "—"
				if lt := r.single["knit"][n.key]; lt != nil {
					if op == "ADD" {
						reps = minMedMax(lt.addRep, 1)
					} else {
						reps = minMedMax(lt.delRep, 1)
					}
				}
				p("| %s | %s | %s | %s | %s | %s | %s | %s |\n", n.label, op, cell(get("knit"), 1), cell(get("deb"), 1), cell(get("new"), 1),
					ratio(median(get("deb")), median(get("knit"))), ratio(median(get("new")), median(get("knit"))), reps)
			}
		}
		p("\n")
	}

	if r.bursts != nil {
		p("## Bursts of %d containers: ADD all, then DEL all, wall seconds (ADD + DEL), median of repetitions\n\n", r.burstCount)
		p("Every burst checked: all addresses distinct, one host-local reservation per container after ADD; no reservation, host veth or cached result after DEL.\n\n")
		p("| network | workers | knit | deb | new | deb ÷ knit | new ÷ knit |\n|---|---|---|---|---|---|---|\n")
		for _, n := range r.burstNets {
			for _, w := range r.burstWorkers {
				tot := func(s string) (float64, string) {
					bs := r.bursts[burstKey(s, n.key, w)]
					if len(bs) == 0 {
						return 0, "—"
					}
					var t, a, d []float64
					for _, x := range bs {
						t, a, d = append(t, x.total()), append(a, x.add), append(d, x.del)
					}
					return median(t), fmt.Sprintf("%.2f (%.2f + %.2f)", median(t), median(a), median(d))
				}
				kt, ks := tot("knit")
				dt, ds := tot("deb")
				nt, ns := tot("new")
				p("| %s | %d | %s | %s | %s | %s | %s |\n", n.key, w, ks, ds, ns, ratio(dt, kt), ratio(nt, kt))
			}
		}
		p("\n")
	}

	if r.scale != nil {
		p("## Scale: ADD / DEL latency with N containers already attached to one %s network, ms: median (p90)\n\n", r.scaleNet.label)
		p("![scale curve](%s)\n\n", plotName)
		p("| attached | knit ADD | deb ADD | new ADD | floor ADD | knit DEL | deb DEL | new DEL | floor DEL | new ÷ knit ADD |\n|---|---|---|---|---|---|---|---|---|---|\n")
		for i, pt := range r.scale["knit"] {
			at := func(s string) *scalePoint {
				if ps := r.scale[s]; i < len(ps) {
					return &ps[i]
				}
				return &scalePoint{}
			}
			p("| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", pt.attached, cell(pt.add, 1), cell(at("deb").add, 1), cell(at("new").add, 1), cell(pt.floorAdd, 2),
				cell(pt.del, 1), cell(at("deb").del, 1), cell(at("new").del, 1), cell(pt.floorDel, 2), ratio(median(at("new").add), median(pt.add)))
		}
		for _, s := range r.suites {
			if ps := r.scale[s.name]; len(ps) > 1 {
				first, last := ps[0], ps[len(ps)-1]
				p("\n%s: ADD at %d ÷ ADD at %d = %.2f; DEL %.2f.", s.name, last.attached, first.attached, median(last.add)/median(first.add), median(last.del)/median(first.del))
			}
		}
		p("\n\nAfter each fill the part waits until the machine's softirq share stays under %.0f %% for %d s (new containers' IPv6 announcements are flooded to every port; see bench/harness/quiet.go). Softirq share of all CPUs during each level's probes (each an ADD followed by its DEL; the probes' own announcements included):", quietShare, quietWindows)
		for _, s := range r.suites {
			var parts []string
			for _, pt := range r.scale[s.name] {
				parts = append(parts, fmt.Sprintf("%d: %.1f %%", pt.attached, pt.softirq))
			}
			if len(parts) > 0 {
				p(" %s %s;", s.name, strings.Join(parts, ", "))
			}
		}
		p("\n\n%s\n", r.scaleGrowth())
	}

	if r.floor != nil {
		f := r.floor
		p("## Floors, ms: median (p90)\n\n")
		p("| what | time |\n|---|---|\n")
		p("| in-process netlink, bridge ADD's link work (veth into the container, port on the bridge, address, default route) | %s |\n", cell(f.linkAdd, 2))
		p("| in-process netlink, delete the container's veth (the kernel's veth teardown) | %s |\n", cell(f.linkDel, 2))
		p("| in-process knit nftables masquerade, add one address (fresh sockets, as a plugin exec) | %s |\n", cell(f.masqAdd, 2))
		p("| … then closing its nftables sockets (the kernel waits for an RCU grace period) | %s |\n", cell(f.masqAddClose, 2))
		p("| in-process knit nftables masquerade, delete one address | %s |\n", cell(f.masqDel, 2))
		p("| … then closing its nftables sockets | %s |\n", cell(f.masqDelClose, 2))
		p("| a Go process's exit: from its last output to being reaped | %s |\n", cell(f.exitPlain, 2))
		p("| the same after one nftables change with the sockets left open (as a plugin exits) | %s |\n", cell(f.exitAfterNft, 2))
		p("| the same, handing the sockets to a forked closer after the output (nft.HandOff + nft.ForkCloser, as knit's plugins do) | %s |\n", cell(f.exitHandOff, 2))
		p("| fork + exec + wait of /bin/true | %s |\n", cell(f.execTrue, 2))
		p("| exec of knit-plugin (VERSION): a Go plugin's start-up | %s |\n", cell(f.execPlugin, 2))
		p("| cnitool ADD of the loopback-only network with knit (runtime + one plugin exec) | %s |\n\n", cell(f.execCnitool, 2))
	}

	if r.rss != nil || r.sizes != nil {
		p("## Footprint\n\n| suite | peak RSS loopback ADD | bridge ADD (with host-local) | bridge DEL | host-local VERSION | installed: the 5 plugins measured | whole plugin dir |\n|---|---|---|---|---|---|---|\n")
		for _, s := range r.suites {
			x := r.rss[s.name]
			sz := r.sizes[s.name]
			if x == nil {
				x = &rssResult{}
			}
			p("| %s | %.1f MiB | %.1f MiB | %.1f MiB | %.1f MiB | %.1f MiB | %.1f MiB |\n", s.name, x.loopbackAdd/1024, x.bridgeAdd/1024, x.bridgeDel/1024, x.version/1024, float64(sz[0])/(1<<20), float64(sz[1])/(1<<20))
		}
		p("\n")
	}

	if r.dataplane != nil {
		p("## Dataplane: iperf3 TCP, 1 stream, %d s per sample, Gbit/s: min / median / max\n\n", r.dpSeconds)
		base := median(r.dataplane["veth"])
		p("| path | knit | deb | new | knit ÷ bare veth |\n|---|---|---|---|---|\n")
		for _, sc := range dpScenarios {
			if sc.net == "" || sc.net == "-" {
				pct := "100 %"
				if k := r.dataplane[sc.key]; sc.net == "-" && base > 0 && len(k) > 0 {
					pct = fmt.Sprintf("%.1f %%", 100*median(k)/base)
				}
				p("| %s | %s | | | %s |\n", sc.label, minMedMax(r.dataplane[sc.key], 2), pct)
				continue
			}
			k := r.dataplane["knit/"+sc.key]
			pct := "—"
			if base > 0 && len(k) > 0 {
				pct = fmt.Sprintf("%.1f %%", 100*median(k)/base)
			}
			p("| %s | %s | %s | %s | %s |\n", sc.label, minMedMax(k, 2), minMedMax(r.dataplane["deb/"+sc.key], 2), minMedMax(r.dataplane["new/"+sc.key], 2), pct)
		}
		if hb := median(r.dataplane["handbridge"]); hb > 0 {
			if k := r.dataplane["knit/bridge-c2c"]; len(k) > 0 {
				p("\nknit's bridge container ↔ container ÷ the bridge made by hand (the kernel's floor for a bridge hop): %.1f %%.\n", 100*median(k)/hb)
			}
		}
		p("\n")
	}

	if len(r.targetVerdicts) > 0 {
		p("## Targets (against upstream v1.10.0, this run)\n\n")
		for _, v := range r.targetVerdicts {
			p("- %s\n", v)
		}
		p("\n")
	}
	p("Run time %s.\n", r.end.Sub(r.start).Round(time.Second))
	p("\nReproduce: `sudo make bench` (see the Makefile's bench target; `BENCH_FLAGS=-quick` for a smoke run).\n")
	return b.String()
}

// verdicts checks the targets against this run.
func (r *results) verdicts() []string {
	var out []string
	check := func(what string, got, want float64, higherBetter bool, unit string) {
		if got == 0 || math.IsNaN(got) {
			return
		}
		ok := got >= want
		if !higherBetter {
			ok = got <= want
		}
		mark := "met"
		if !ok {
			mark = "**missed**"
		}
		cmp := "≥"
		if !higherBetter {
			cmp = "≤"
		}
		out = append(out, fmt.Sprintf("%s: %.2f%s (target %s %.2f%s): %s", what, got, unit, cmp, want, unit, mark))
	}
	sp := func(net, op string) float64 {
		k, n := r.single["knit"][net], r.single["new"][net]
		if k == nil || n == nil {
			return 0
		}
		if op == "ADD" {
			return median(n.add) / median(k.add)
		}
		return median(n.del) / median(k.del)
	}
	if r.single != nil {
		check("bridge ADD speed-up", sp("bridge", "ADD"), 3, true, "×")
		check("bridge DEL speed-up", sp("bridge", "DEL"), 2.5, true, "×")
		check("portmap ADD speed-up", sp("portmap", "ADD"), 5, true, "×")
		check("portmap DEL speed-up", sp("portmap", "DEL"), 4, true, "×")
	}
	if r.bursts != nil {
		bt := func(s, net string) float64 {
			var t []float64
			for _, x := range r.bursts[burstKey(s, net, 8)] {
				t = append(t, x.total())
			}
			return median(t)
		}
		if k := bt("knit", "bridge"); k > 0 {
			check("8-way burst, bridge, speed-up", bt("new", "bridge")/k, 2, true, "×")
		}
		if k := bt("knit", "portmap"); k > 0 {
			check("8-way burst, portmap, speed-up", bt("new", "portmap")/k, 3.5, true, "×")
		}
	}
	if ps := r.scale["knit"]; len(ps) > 1 {
		check(fmt.Sprintf("knit ADD at %d ÷ at %d attached", ps[len(ps)-1].attached, ps[0].attached), median(ps[len(ps)-1].add)/median(ps[0].add), 1.2, false, "")
	}
	if r.dataplane != nil {
		if base := median(r.dataplane["veth"]); base > 0 {
			check("knit bridge container ↔ container ÷ bare veth", 100*median(r.dataplane["knit/bridge-c2c"])/base, 95, true, " %")
		}
	}
	if k, n := r.rss["knit"], r.rss["new"]; k != nil && n != nil {
		check("peak RSS bridge ADD, knit ÷ new", k.bridgeAdd/n.bridgeAdd, 1, false, "")
	}
	if k, n := r.sizes["knit"], r.sizes["new"]; k[0] > 0 && n[0] > 0 {
		check("installed size of the 5 plugins, knit ÷ new", float64(k[0])/float64(n[0]), 1.0/3, false, "")
	}
	return out
}
