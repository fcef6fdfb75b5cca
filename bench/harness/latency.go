package main

import (
	"fmt"
	"time"
)

// latency holds single-operation samples in milliseconds.
type latency struct {
	add, del       []float64 // pooled over repetitions
	addRep, delRep []float64 // median of each repetition
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// rotate returns suites starting at position r, so every suite takes every
// place in the order across repetitions.
func rotate(ss []suite, r int) []suite {
	out := make([]suite, 0, len(ss))
	for i := range ss {
		out = append(out, ss[(i+r)%len(ss)])
	}
	return out
}

// settle gives the kernel a moment to finish namespace teardown from the
// previous block, so it is not billed to the next suite.
func settle() { time.Sleep(300 * time.Millisecond) }

// suiteHost is one suite's host namespace for a network, with the
// container namespaces attached to it.
type suiteHost struct {
	s  suite
	h  *host
	cs []*container
}

// openSuiteHosts makes a host namespace for every suite that has network n.
// closeAll removes them and their containers, also after an error.
func (l *lab) openSuiteHosts(ss []suite, n network) (hs []*suiteHost, closeAll func(), err error) {
	closeAll = func() {
		for _, x := range hs {
			closeContainers(x.cs)
			x.h.close()
		}
	}
	for _, s := range ss {
		if !s.has(n) {
			continue
		}
		h, err := l.newHost(s, n)
		if err != nil {
			return hs, closeAll, err
		}
		hs = append(hs, &suiteHost{s: s, h: h})
	}
	return hs, closeAll, nil
}

// singleRound measures, for every suite that has network n, samples ADDs
// then samples DELs, each in a fresh container namespace, after one untimed
// warm-up per suite. Each suite has its own host namespace, all held at
// once, and the samples interleave: sample i of every suite, in an order
// that rotates with i, before sample i+1 of any. A change in the machine's
// load then hits every suite alike, which blocks of one suite at a time
// (on a shared 2-CPU machine) did not.
func (l *lab) singleRound(ss []suite, n network, samples int) (add, del map[string][]float64, err error) {
	sides, closeAll, err := l.openSuiteHosts(ss, n)
	defer closeAll()
	if err != nil {
		return nil, nil, err
	}
	for _, x := range sides {
		h := x.h
		warm, err := h.newContainers(1, 999)
		if err != nil {
			return nil, nil, err
		}
		_, err = h.run("add", warm[0])
		if err == nil {
			_, err = h.run("del", warm[0])
		}
		closeContainers(warm)
		if err != nil {
			return nil, nil, err
		}
		if x.cs, err = h.newContainers(samples, 0); err != nil {
			return nil, nil, err
		}
	}
	settle()
	add, del = map[string][]float64{}, map[string][]float64{}
	for _, verb := range []string{"add", "del"} {
		for i := 0; i < samples; i++ {
			for j := range sides {
				x := sides[(i+j)%len(sides)]
				d, err := x.h.run(verb, x.cs[i])
				if err != nil {
					return nil, nil, err
				}
				if verb == "add" {
					add[x.s.name] = append(add[x.s.name], ms(d))
				} else {
					del[x.s.name] = append(del[x.s.name], ms(d))
				}
			}
		}
	}
	return add, del, nil
}

// measureSingle runs the single ADD/DEL latency suite: reps repetitions,
// in each every network, in each all suites interleaved (singleRound).
func (l *lab) measureSingle(ss []suite, nets []network, samples, reps int) (map[string]map[string]*latency, error) {
	res := map[string]map[string]*latency{}
	for r := 0; r < reps; r++ {
		for _, n := range nets {
			adds, dels, err := l.singleRound(rotate(ss, r), n, samples)
			if err != nil {
				return nil, err
			}
			for _, s := range ss {
				add, del := adds[s.name], dels[s.name]
				if len(add) == 0 {
					continue
				}
				if res[s.name] == nil {
					res[s.name] = map[string]*latency{}
				}
				lt := res[s.name][n.key]
				if lt == nil {
					lt = &latency{}
					res[s.name][n.key] = lt
				}
				lt.add = append(lt.add, add...)
				lt.del = append(lt.del, del...)
				lt.addRep = append(lt.addRep, median(add))
				lt.delRep = append(lt.delRep, median(del))
				logf("single rep %d %-7s %-5s ADD %6.1f ms  DEL %6.1f ms (load %s)", r+1, n.key, s.name, median(add), median(del), loadavg())
			}
			settle()
		}
	}
	return res, nil
}

// scalePoint is ADD/DEL latency with a number of containers attached.
type scalePoint struct {
	attached           int
	add, del           []float64
	floorAdd, floorDel []float64 // the in-process floor at this level (scalefloor.go)
	softirq            float64   // softirq % of all CPUs during the probes (quiet.go)
}

// measureScale attaches containers to one bridge+portmap network per suite,
// all suites held at once so that the measurements at each level alternate
// between suites. At each level it times samples probes, each an ADD
// followed by its DEL.
func (l *lab) measureScale(ss []suite, n network, levels []int, samples, workers int) (map[string][]scalePoint, error) {
	sts, closeAll, err := l.openSuiteHosts(ss, n)
	defer closeAll()
	if err != nil {
		return nil, err
	}
	res := map[string][]scalePoint{}
	for li, level := range levels {
		for _, st := range rotate(suitesOf(sts, func(x *suiteHost) suite { return x.s }), li) {
			var cur *suiteHost
			for _, x := range sts {
				if x.s.name == st.name {
					cur = x
				}
			}
			if grow := level - len(cur.cs); grow > 0 {
				more, err := cur.h.newContainers(grow, 1000+len(cur.cs))
				if err != nil {
					return nil, err
				}
				cur.cs = append(cur.cs, more...)
				t := time.Now()
				if _, err := cur.h.runAll("add", more, workers); err != nil {
					return nil, fmt.Errorf("filling %s to %d: %w", cur.s.name, level, err)
				}
				logf("scale %-5s filled to %d in %.1f s", cur.s.name, level, time.Since(t).Seconds())
				waited, share := waitQuiet() // see quiet.go
				logf("scale %-5s settled for %.0f s (softirq %.1f %% of the CPUs in the last second)", cur.s.name, waited.Seconds(), share)
			}
			settle()
			probe, err := cur.h.newContainers(samples, 0)
			if err != nil {
				return nil, err
			}
			p := scalePoint{attached: level}
			meter := startSoftirq()
			fl, err := scaleFloorFor(cur.s, cur.h)
			if err != nil {
				closeContainers(probe)
				return nil, err
			}
			// Each probe's DEL follows its ADD: every probe then sees
			// exactly level containers attached, and its container's IPv6
			// announcements (MLD reports, router solicitations in the
			// second after it comes up, each copied to every port; see
			// quiet.go) end with its DEL instead of landing on the next
			// probes, which, for a suite whose ADDs take 20 ms, used to
			// run inside the storms of the ones before.
			for _, c := range probe {
				d, err := cur.h.run("add", c)
				if err == nil {
					p.add = append(p.add, ms(d))
					err = fl.floorSample(&p) // one floor sample after each probe ADD
				}
				if err == nil {
					d, err = cur.h.run("del", c)
					p.del = append(p.del, ms(d))
				}
				if err != nil {
					fl.close()
					closeContainers(probe)
					return nil, err
				}
			}
			fl.close()
			p.softirq = meter.share()
			closeContainers(probe)
			res[cur.s.name] = append(res[cur.s.name], p)
			logf("scale %-5s at %4d attached: ADD %6.1f ms  DEL %6.1f ms (load %s, softirq %.1f %% during the probes)", cur.s.name, level, median(p.add), median(p.del), loadavg(), p.softirq)
		}
	}
	return res, nil
}

func suitesOf[T any](xs []T, f func(T) suite) []suite {
	out := make([]suite, 0, len(xs))
	for _, x := range xs {
		out = append(out, f(x))
	}
	return out
}
