package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/knit-cni/knit/internal/netns"
	"golang.org/x/sys/unix"
)

// suite is one set of plugins measured through the same runtime.
type suite struct {
	name  string // "knit", "deb", "new"
	label string // for the tables
	dir   string // CNI_PATH
}

// has reports whether every plugin type the network needs is in the suite.
func (s suite) has(n network) bool {
	for _, t := range n.types {
		if _, err := os.Stat(filepath.Join(s.dir, t)); err != nil {
			return false
		}
	}
	return true
}

// network is one of the measured configurations.
type network struct {
	key     string   // "lo", "lo2", "bridge", "ptp", "portmap"
	label   string   // for the tables
	types   []string // plugin types it needs
	portmap bool     // needs a portMappings capability argument
	conf    string   // conflist template: %s is the host-local dataDir
}

var networks = []network{
	{key: "lo", label: "loopback only", types: []string{"loopback"},
		conf: `{"cniVersion":"1.0.0","name":"kblo","plugins":[{"type":"loopback"}]}`},
	// Two plugins that do (almost) nothing: cnitool's cost of a two-plugin
	// chain, the floor under the portmap network's second exec.
	{key: "lo2", label: "loopback, twice in a chain (two execs)", types: []string{"loopback"},
		conf: `{"cniVersion":"1.0.0","name":"kblo2","plugins":[{"type":"loopback"},{"type":"loopback"}]}`},
	{key: "bridge", label: "bridge + host-local + ipMasq", types: []string{"bridge", "host-local"},
		conf: `{"cniVersion":"1.0.0","name":"kbbridge","plugins":[{"type":"bridge","bridge":"kbbr0","isGateway":true,"ipMasq":true,
 "ipam":{"type":"host-local","subnet":"10.99.0.0/16","dataDir":%q}}]}`},
	{key: "ptp", label: "ptp + host-local + ipMasq", types: []string{"ptp", "host-local"},
		conf: `{"cniVersion":"1.0.0","name":"kbptp","plugins":[{"type":"ptp","ipMasq":true,
 "ipam":{"type":"host-local","subnet":"10.98.0.0/16","dataDir":%q}}]}`},
	{key: "portmap", label: "bridge + host-local + ipMasq + portmap", types: []string{"bridge", "host-local", "portmap"}, portmap: true,
		conf: `{"cniVersion":"1.0.0","name":"kbportmap","plugins":[{"type":"bridge","bridge":"kbbr1","isGateway":true,"ipMasq":true,
 "ipam":{"type":"host-local","subnet":"10.97.0.0/16","dataDir":%q}},{"type":"portmap","capabilities":{"portMappings":true}}]}`},
}

func networkByKey(k string) network {
	for _, n := range networks {
		if n.key == k {
			return n
		}
	}
	panic("no network " + k)
}

// name is the network's "name" in the conflist.
func (n network) name() string { return "kb" + n.key }

// lab holds what one run made: a work directory and the namespaces in it.
type lab struct {
	work    string // temp dir for conf dirs, IPAM data and namespaces
	nsDir   string // named namespaces live here, not in /run/netns
	cnitool string
	seq     atomic.Int64
}

// newNS makes a fresh named network namespace and returns its path.
func (l *lab) newNS(tag string) (string, error) {
	return netns.Create(l.nsDir, fmt.Sprintf("%s%d", tag, l.seq.Add(1)))
}

// host is a bench-made "host" namespace with one network configured in it:
// the plugins run here, so the real host is never touched.
type host struct {
	lab     *lab
	suite   suite
	net     network
	path    string // the host netns
	confDir string // NETCONFPATH
	ipamDir string // host-local dataDir
	dir     string // everything of this host, removed by close
}

// newHost makes a host namespace with loopback up and writes the network's
// conflist for cnitool.
func (l *lab) newHost(s suite, n network) (*host, error) {
	dir, err := os.MkdirTemp(l.work, s.name+"-"+n.key+"-")
	if err != nil {
		return nil, err
	}
	h := &host{lab: l, suite: s, net: n, dir: dir, confDir: filepath.Join(dir, "net.d"), ipamDir: filepath.Join(dir, "ipam")}
	if err := os.MkdirAll(h.confDir, 0o755); err != nil {
		return nil, err
	}
	conf := n.conf
	if strings.Contains(conf, "%q") {
		conf = fmt.Sprintf(conf, h.ipamDir)
	}
	if err := os.WriteFile(filepath.Join(h.confDir, n.name()+".conflist"), []byte(conf), 0o644); err != nil {
		return nil, err
	}
	if h.path, err = l.newNS("h"); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := netns.Do(h.path, func() error { return exec.Command("ip", "link", "set", "lo", "up").Run() }); err != nil {
		h.close()
		return nil, fmt.Errorf("bringing up lo in the host namespace: %w", err)
	}
	return h, nil
}

// close deletes the host namespace (with every link, route and rule the
// plugins made in it) and its files. Containers must be closed separately.
func (h *host) close() {
	if h.path != "" {
		if err := netns.DeletePath(h.path); err != nil {
			logf("deleting %s: %v", h.path, err)
		}
	}
	os.RemoveAll(h.dir)
	// cnitool keeps results under /var/lib/cni/results, which is the
	// lab's private bind mount; drop this network's entries.
	for _, dir := range []string{"/var/lib/cni/results", "/var/lib/cni/cache/results"} {
		m, _ := filepath.Glob(filepath.Join(dir, h.net.name()+"-*"))
		for _, f := range m {
			os.Remove(f)
		}
	}
}

// container is one attachment target: a fresh namespace and its index
// (used for the port mapping).
type container struct {
	ns  string
	idx int
	ip  netip.Addr
}

func (h *host) newContainers(n, first int) ([]*container, error) {
	cs := make([]*container, 0, n)
	for i := 0; i < n; i++ {
		p, err := h.lab.newNS("c")
		if err != nil {
			closeContainers(cs)
			return nil, err
		}
		cs = append(cs, &container{ns: p, idx: first + i})
	}
	return cs, nil
}

func closeContainers(cs []*container) {
	for _, c := range cs {
		if err := netns.DeletePath(c.ns); err != nil {
			logf("deleting %s: %v", c.ns, err)
		}
	}
}

// run executes one "cnitool VERB NET NETNS" from inside the host namespace
// and returns its wall time. ADD records the container's IPv4 address.
func (h *host) run(verb string, c *container) (time.Duration, error) {
	var d time.Duration
	var out []byte
	err := netns.Do(h.path, func() error {
		cmd := exec.Command(h.lab.cnitool, verb, h.net.name(), c.ns)
		cmd.Env = []string{
			"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"CNI_PATH=" + h.suite.dir,
			"NETCONFPATH=" + h.confDir,
		}
		if h.net.portmap {
			cmd.Env = append(cmd.Env, fmt.Sprintf(`CAP_ARGS={"portMappings":[{"hostPort":%d,"containerPort":80,"protocol":"tcp"}]}`, 20000+c.idx))
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		start := time.Now()
		o, err := cmd.Output()
		d = time.Since(start)
		out = o
		if err != nil {
			return fmt.Errorf("cnitool %s %s %s (%s): %v: %s%s", verb, h.net.name(), filepath.Base(c.ns), h.suite.name, err, bytes.TrimSpace(stderr.Bytes()), bytes.TrimSpace(out))
		}
		return nil
	})
	if err != nil {
		return d, err
	}
	if verb == "add" && len(out) > 0 {
		var r struct {
			IPs []struct {
				Address string `json:"address"`
			} `json:"ips"`
		}
		if json.Unmarshal(out, &r) == nil {
			for _, ip := range r.IPs {
				if p, err := netip.ParsePrefix(ip.Address); err == nil && p.Addr().Is4() {
					c.ip = p.Addr()
				}
			}
		}
	}
	return d, nil
}

// runAll runs verb for every container with the given number of workers
// and returns the wall time of the whole batch.
func (h *host) runAll(verb string, cs []*container, workers int) (time.Duration, error) {
	var (
		mu   sync.Mutex
		errs []error
		next atomic.Int64
		wg   sync.WaitGroup
	)
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(cs) {
					return
				}
				if _, err := h.run(verb, cs[i]); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	d := time.Since(start)
	if len(errs) > 0 {
		return d, fmt.Errorf("%d of %d %s failed, first: %w", len(errs), len(cs), verb, errs[0])
	}
	return d, nil
}

// setupLab makes the work dir and, in the bench's private mount namespace,
// bind-mounts fresh directories over /var/lib/cni (cnitool's result cache)
// and /run/knit (knit's nftables lock), so nothing of the real host's state
// is read or written.
func setupLab(cnitool string) (*lab, error) {
	work, err := os.MkdirTemp("/var/tmp", "knit-bench-")
	if err != nil {
		return nil, err
	}
	l := &lab{work: work, nsDir: filepath.Join(work, "netns"), cnitool: cnitool}
	for _, target := range []string{"/var/lib/cni", "/run/knit"} {
		src := filepath.Join(work, "mnt", strings.ReplaceAll(strings.Trim(target, "/"), "/", "_"))
		if err := os.MkdirAll(src, 0o755); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(target, 0o755); err != nil {
			return nil, err
		}
		if err := unix.Mount(src, target, "", unix.MS_BIND, ""); err != nil {
			return nil, fmt.Errorf("bind-mounting %s over %s: %w", src, target, err)
		}
	}
	return l, nil
}

// close removes the lab's namespaces and files.
func (l *lab) close() {
	names, _ := netns.List(l.nsDir)
	for _, n := range names {
		_ = netns.Delete(l.nsDir, n)
	}
	_ = unix.Unmount(l.nsDir, unix.MNT_DETACH)
	for _, target := range []string{"/var/lib/cni", "/run/knit"} {
		_ = unix.Unmount(target, unix.MNT_DETACH)
	}
	if err := os.RemoveAll(l.work); err != nil && !errors.Is(err, os.ErrNotExist) {
		logf("removing %s: %v", l.work, err)
	}
}
