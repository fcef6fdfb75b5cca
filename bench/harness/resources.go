package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/knit-cni/knit/internal/netns"
)

// rssResult is the peak resident set of single plugin execs, in KiB
// (median of a few runs).
type rssResult struct {
	loopbackAdd, bridgeAdd, bridgeDel, version float64
}

// execPlugin runs one plugin binary directly (no runtime in between) in
// the host namespace and returns the peak RSS of it and the processes it
// waited for (its IPAM delegate), in KiB.
func (h *host) execPlugin(typ, command, conf string, c *container) (float64, []byte, error) {
	var rss float64
	var out []byte
	err := netns.Do(h.path, func() error {
		cmd := exec.Command(filepath.Join(h.suite.dir, typ))
		cmd.Env = []string{
			"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
			"CNI_COMMAND=" + command, "CNI_CONTAINERID=rss" + filepath.Base(c.ns), "CNI_NETNS=" + c.ns,
			"CNI_IFNAME=eth0", "CNI_PATH=" + h.suite.dir,
		}
		cmd.Stdin = strings.NewReader(conf)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		o, err := cmd.Output()
		out = o
		if err != nil {
			return fmt.Errorf("%s %s %s: %v: %s %s", h.suite.name, typ, command, err, stderr.Bytes(), o)
		}
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			rss = float64(ru.Maxrss)
		}
		return nil
	})
	return rss, out, err
}

// measureRSS runs loopback ADD, bridge ADD and DEL, and a plugin VERSION
// directly, runs times each.
func (l *lab) measureRSS(s suite, runs int) (*rssResult, error) {
	br := networkByKey("bridge")
	h, err := l.newHost(s, br)
	if err != nil {
		return nil, err
	}
	defer h.close()
	conf := fmt.Sprintf(`{"cniVersion":"1.0.0","name":"kbbridge","type":"bridge","bridge":"kbbr0","isGateway":true,"ipMasq":true,
 "ipam":{"type":"host-local","subnet":"10.99.0.0/16","dataDir":%q}}`, h.ipamDir)
	loConf := `{"cniVersion":"1.0.0","name":"kblo","type":"loopback"}`
	var lo, add, del, ver []float64
	for i := 0; i < runs; i++ {
		cs, err := h.newContainers(1, i)
		if err != nil {
			return nil, err
		}
		c := cs[0]
		r, _, err := h.execPlugin("loopback", "ADD", loConf, c)
		if err == nil {
			lo = append(lo, r)
			r, _, err = h.execPlugin("bridge", "ADD", conf, c)
		}
		if err == nil {
			add = append(add, r)
			r, _, err = h.execPlugin("bridge", "DEL", conf, c)
		}
		if err == nil {
			del = append(del, r)
			r, _, err = h.execPlugin("host-local", "VERSION", "", c)
		}
		closeContainers(cs)
		if err != nil {
			return nil, err
		}
		ver = append(ver, r)
	}
	return &rssResult{loopbackAdd: median(lo), bridgeAdd: median(add), bridgeDel: median(del), version: median(ver)}, nil
}

// installedSize sums the sizes of the distinct files behind the given
// plugin types (several of knit's links point at one binary, counted once).
func installedSize(dir string, types []string) (int64, error) {
	seen := map[string]bool{}
	var total int64
	for _, t := range types {
		p, err := filepath.EvalSymlinks(filepath.Join(dir, t))
		if err != nil {
			return 0, err
		}
		if seen[p] {
			continue
		}
		seen[p] = true
		st, err := os.Stat(p)
		if err != nil {
			return 0, err
		}
		total += st.Size()
	}
	return total, nil
}

// dirSize is the size of every distinct regular file in dir.
func dirSize(dir string) int64 {
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	n, _ := installedSize(dir, names)
	return n
}
