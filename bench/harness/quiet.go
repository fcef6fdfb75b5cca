package main

import (
	"os"
	"strconv"
	"strings"
	"time"
)

// The machine's softirq share. Every container that joins a bridge
// announces itself (IPv6 DAD, MLD reports, router solicitations, which go
// on at 4, 8, 16 s…), and with no multicast querier the bridge copies each
// such frame to every port: at 1,000 ports a frame costs ~5 ms of softirq
// CPU, ~25–30 ms per new container (measured). Right after a fill that
// storm competes with the probes for the two CPUs, so the scale part waits
// for it to pass (waitQuiet) and reports the share seen during each level's
// probes, which the probe containers' own announcements add to.

// cpuTimes reads the softirq and total jiffies of all CPUs from /proc/stat.
func cpuTimes() (softirq, total uint64, ok bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, 0, false
	}
	for i, s := range f[1:] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, 0, false
		}
		if i < 8 { // user nice system idle iowait irq softirq steal (guest is in user)
			total += v
		}
		if i == 6 {
			softirq = v
		}
	}
	return softirq, total, true
}

// softirqMeter measures the softirq share between its start and share().
type softirqMeter struct{ s0, t0 uint64 }

func startSoftirq() softirqMeter {
	s, t, _ := cpuTimes()
	return softirqMeter{s, t}
}

// share is the softirq share of all CPUs' time since start, in percent (-1
// when /proc/stat cannot tell).
func (m softirqMeter) share() float64 {
	s, t, ok := cpuTimes()
	if !ok || t <= m.t0 {
		return -1
	}
	return 100 * float64(s-m.s0) / float64(t-m.t0)
}

const (
	quietShare   = 2.0 // percent of all CPUs
	quietWindows = 3   // consecutive one-second windows under quietShare
	quietMin     = 5 * time.Second
	quietMax     = 90 * time.Second
)

// waitQuiet waits at least quietMin, then until the softirq share has stayed
// under quietShare for quietWindows seconds in a row, at most quietMax. It
// returns how long it waited and the last window's share.
func waitQuiet() (time.Duration, float64) {
	start := time.Now()
	time.Sleep(quietMin)
	calm, last := 0, -1.0
	for time.Since(start) < quietMax {
		m := startSoftirq()
		time.Sleep(time.Second)
		if last = m.share(); last >= 0 && last < quietShare {
			if calm++; calm >= quietWindows {
				break
			}
		} else {
			calm = 0
		}
	}
	return time.Since(start), last
}
