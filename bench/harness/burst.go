package main

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/knit-cni/knit/internal/netns"
	"github.com/vishvananda/netlink"
)

// burst is one timed burst: ADD of all containers, then DEL of all.
type burst struct {
	add, del float64 // seconds
}

func (b burst) total() float64 { return b.add + b.del }

// burstKey names a burst series.
func burstKey(suite, net string, workers int) string {
	return fmt.Sprintf("%s/%s/%d", suite, net, workers)
}

// measureBursts runs, per repetition, for each network and worker count,
// one burst per suite in turn. Namespaces are made untimed; after ADD and
// after DEL it checks for duplicate addresses and leftovers.
func (l *lab) measureBursts(ss []suite, nets []network, count int, workerCounts []int, reps int) (map[string][]burst, error) {
	res := map[string][]burst{}
	for r := 0; r < reps; r++ {
		for _, n := range nets {
			for _, w := range workerCounts {
				for _, s := range rotate(ss, r) {
					if !s.has(n) {
						continue
					}
					b, err := l.oneBurst(s, n, count, w)
					if err != nil {
						return nil, err
					}
					k := burstKey(s.name, n.key, w)
					res[k] = append(res[k], b)
					logf("burst rep %d %-7s %-5s %d-way: ADD %.2f s  DEL %.2f s (load %s)", r+1, n.key, s.name, w, b.add, b.del, loadavg())
					settle()
				}
			}
		}
	}
	return res, nil
}

func (l *lab) oneBurst(s suite, n network, count, workers int) (burst, error) {
	h, err := l.newHost(s, n)
	if err != nil {
		return burst{}, err
	}
	defer h.close()
	cs, err := h.newContainers(count, 0)
	if err != nil {
		return burst{}, err
	}
	defer closeContainers(cs)
	var b burst
	d, err := h.runAll("add", cs, workers)
	if err != nil {
		return b, err
	}
	b.add = d.Seconds()
	if err := h.checkAdded(cs); err != nil {
		return b, err
	}
	d, err = h.runAll("del", cs, workers)
	if err != nil {
		return b, err
	}
	b.del = d.Seconds()
	return b, h.checkDeleted()
}

// checkAdded verifies that every container got a distinct address and
// that host-local holds exactly one reservation per container.
func (h *host) checkAdded(cs []*container) error {
	seen := map[netip.Addr]bool{}
	for _, c := range cs {
		if !c.ip.IsValid() {
			return fmt.Errorf("%s: a container got no IPv4 address", h.suite.name)
		}
		if seen[c.ip] {
			return fmt.Errorf("%s: duplicate address %s", h.suite.name, c.ip)
		}
		seen[c.ip] = true
	}
	if n := h.reservations(); n != len(cs) {
		return fmt.Errorf("%s: host-local holds %d reservations for %d containers", h.suite.name, n, len(cs))
	}
	return nil
}

// checkDeleted verifies that DEL left no reservation, no host veth and no
// cached result behind.
func (h *host) checkDeleted() error {
	if n := h.reservations(); n != 0 {
		return fmt.Errorf("%s: %d host-local reservations left after DEL", h.suite.name, n)
	}
	veths := 0
	// The kernel may still be tearing veths down for a moment after the
	// last DEL returned (knit deletes them without waiting).
	for try := 0; try < 50; try++ {
		veths = 0
		err := netns.Do(h.path, func() error {
			links, err := netlink.LinkList()
			if err != nil {
				return err
			}
			for _, ln := range links {
				if ln.Type() == "veth" {
					veths++
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		if veths == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if veths != 0 {
		return fmt.Errorf("%s: %d host veths left after DEL", h.suite.name, veths)
	}
	m, _ := filepath.Glob(filepath.Join("/var/lib/cni/results", h.net.name()+"-*"))
	if len(m) != 0 {
		return fmt.Errorf("%s: %d cached results left after DEL", h.suite.name, len(m))
	}
	return nil
}

// reservations counts host-local's per-address files.
func (h *host) reservations() int {
	ents, _ := os.ReadDir(filepath.Join(h.ipamDir, h.net.name()))
	n := 0
	for _, e := range ents {
		if _, err := netip.ParseAddr(e.Name()); err == nil {
			n++
		}
	}
	return n
}
