// Package demo is `knit demo`: it builds a sandbox "host" namespace, writes
// the talk's two networks exactly as the talk shows them (ptp "mynet" and
// bridge "imthebestnetever" on "myawesomebr"), attaches three container
// namespaces through knit's runtime and plugins, sends real traffic between
// them, to the gateways and out through the masquerade, prints the topology
// it built, and removes everything again — also when interrupted.
//
// Nothing touches the real host: plugins run inside the sandbox namespace,
// and the caller (cmd/knit) runs the demo in a private mount namespace with
// tmpfs over /run/netns and /var/lib/cni, so even a killed demo leaves no
// trace.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/knit-cni/knit/internal/netns"
	"github.com/knit-cni/knit/internal/probe"
	"github.com/knit-cni/knit/internal/topology"
	"github.com/knit-cni/knit/pkg/cni"
	"github.com/knit-cni/knit/pkg/cni/runtime"
	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
)

// The talk's configurations, as written on its slides (the slides show the
// objects' bodies; these are those bodies, closed).
const (
	PtpConf = `{
    "name": "mynet",
    "type": "ptp",
    "ipam": {
        "type": "host-local",
        "subnet": "10.1.1.0/24"
    },
    "dns": {
        "nameservers": [ "10.1.1.1", "8.8.8.8" ]
    }
}
`
	BridgeConf = `{
    "name": "imthebestnetever",
    "type": "bridge",
    "bridge": "myawesomebr",
    "isDefaultGateway": true,
    "ipMasq": true,
    "hairpinMode": true,
    "ipam": {
        "type": "host-local",
        "subnet": "10.22.0.0/16"
    }
}
`
)

// Options configure a demo run.
type Options struct {
	PluginDir string    // directory holding the plugin binaries (CNI_PATH)
	Out       io.Writer // where the story is told
	WorkDir   string    // conf dir and cache go under it; "" = a temp dir
}

type attachment struct {
	ns     string // label
	path   string // netns path
	net    *cni.NetworkConfigList
	ifname string
	result *cni.Result
}

// Demo is one run's state, so cleanup knows what exists.
type Demo struct {
	opt       Options
	rt        *runtime.CNI
	prefix    string
	host, wan string // namespace paths
	ctrs      map[string]string
	atts      []*attachment
	confDir   string
}

// Run performs the whole demo and always cleans up; the returned error is the
// first failure, joined with any cleanup failure.
func Run(ctx context.Context, opt Options) (err error) {
	if opt.Out == nil {
		opt.Out = os.Stdout
	}
	work := opt.WorkDir
	if work == "" {
		if work, err = os.MkdirTemp("", "knit-demo-"); err != nil {
			return err
		}
		defer os.RemoveAll(work)
	}
	d := &Demo{
		opt:     opt,
		prefix:  fmt.Sprintf("knitdemo%d", os.Getpid()),
		ctrs:    map[string]string{},
		confDir: filepath.Join(work, "net.d"),
	}
	d.rt = runtime.New(runtime.Config{Paths: []string{opt.PluginDir}, CacheDir: filepath.Join(work, "cache")})
	defer func() {
		cerr := d.cleanup()
		err = errors.Join(err, cerr)
	}()
	return d.run(ctx)
}

func (d *Demo) say(format string, args ...any) {
	fmt.Fprintf(d.opt.Out, format+"\n", args...)
}

func (d *Demo) run(ctx context.Context) error {
	d.say("== knit demo: the \"Practical CNI\" networks, for real, in a sandbox ==")
	if err := d.makeHost(); err != nil {
		return err
	}
	if err := os.MkdirAll(d.confDir, 0o755); err != nil {
		return err
	}
	for file, body := range map[string]string{"10-mynet.conf": PtpConf, "20-imthebestnetever.conf": BridgeConf} {
		if err := os.WriteFile(filepath.Join(d.confDir, file), []byte(body), 0o644); err != nil {
			return err
		}
	}
	d.say("\nnetwork configs (%s), exactly as the talk wrote them:", d.confDir)
	d.say("--- 10-mynet.conf\n%s--- 20-imthebestnetever.conf\n%s", PtpConf, BridgeConf)
	ptp, err := runtime.LoadConfList(d.confDir, "mynet")
	if err != nil {
		return err
	}
	br, err := runtime.LoadConfList(d.confDir, "imthebestnetever")
	if err != nil {
		return err
	}

	for _, name := range []string{"ns1", "ns2", "ns3"} {
		p, err := netns.Create("", d.prefix+"-"+name)
		if err != nil {
			return err
		}
		d.ctrs[name] = p
	}
	plan := []struct {
		ns, ifname string
		net        *cni.NetworkConfigList
	}{
		{"ns1", "eth0", br}, {"ns2", "eth0", br}, {"ns3", "eth0", ptp}, {"ns3", "eth1", br},
	}
	d.say("attaching (plugins run inside the sandbox host namespace):")
	for _, p := range plan {
		if err := ctx.Err(); err != nil {
			return err
		}
		a := &attachment{ns: p.ns, path: d.ctrs[p.ns], net: p.net, ifname: p.ifname}
		start := time.Now()
		err := netns.Do(d.host, func() error {
			var err error
			a.result, err = d.rt.AddNetworkList(ctx, p.net, d.rtConf(a))
			return err
		})
		// Registered even when ADD failed: DEL must follow every ADD.
		d.atts = append(d.atts, a)
		if err != nil {
			return fmt.Errorf("ADD %s to %s: %w", p.ns, p.net.Name, err)
		}
		d.say("  ADD %-3s %-4s -> %-16s %-18s %s (%.1f ms)", p.ns, p.ifname, p.net.Name, addrs(a.result), gateways(a.result),
			float64(time.Since(start).Microseconds())/1000)
	}
	if err := d.traffic(ctx); err != nil {
		return err
	}
	return d.showTopology()
}

func (d *Demo) rtConf(a *attachment) *runtime.RuntimeConf {
	return &runtime.RuntimeConf{ContainerID: d.prefix + "-" + a.ns, NetNS: a.path, IfName: a.ifname}
}

// makeHost creates the sandbox host namespace and an "outside" namespace the
// host reaches over a veth, standing in for the world behind the masquerade.
func (d *Demo) makeHost() error {
	var err error
	if d.host, err = netns.Create("", d.prefix+"-host"); err != nil {
		return err
	}
	if d.wan, err = netns.Create("", d.prefix+"-outside"); err != nil {
		return err
	}
	hh, err := vnetns.GetFromPath(d.host)
	if err != nil {
		return err
	}
	defer hh.Close()
	wh, err := vnetns.GetFromPath(d.wan)
	if err != nil {
		return err
	}
	defer wh.Close()
	hn, err := netlink.NewHandleAt(hh)
	if err != nil {
		return err
	}
	defer hn.Close()
	wn, err := netlink.NewHandleAt(wh)
	if err != nil {
		return err
	}
	defer wn.Close()
	if err := hn.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "uplink"}, PeerName: "eth0", PeerNamespace: netlink.NsFd(wh)}); err != nil {
		return fmt.Errorf("creating the sandbox uplink: %w", err)
	}
	for _, s := range []struct {
		h          *netlink.Handle
		link, addr string
	}{{hn, "uplink", "203.0.113.1/24"}, {wn, "eth0", "203.0.113.2/24"}, {hn, "lo", ""}, {wn, "lo", ""}} {
		l, err := s.h.LinkByName(s.link)
		if err != nil {
			return err
		}
		if s.addr != "" {
			a, _ := netlink.ParseAddr(s.addr)
			if err := s.h.AddrAdd(l, a); err != nil {
				return err
			}
		}
		if err := s.h.LinkSetUp(l); err != nil {
			return err
		}
	}
	d.say("sandbox host namespace %s, with an uplink to %s (203.0.113.0/24)", d.host, d.wan)
	return nil
}

func (d *Demo) traffic(ctx context.Context) error {
	d.say("\ntraffic:")
	ip := func(ns, ifname string) net.IP {
		for _, a := range d.atts {
			if a.ns == ns && a.ifname == ifname && a.result != nil && len(a.result.IPs) > 0 {
				return a.result.IPs[0].Address.IP
			}
		}
		return nil
	}
	srv2, err := probe.ListenTCP(d.ctrs["ns2"], "0.0.0.0:7777")
	if err != nil {
		return err
	}
	defer srv2.Close()
	srvOut, err := probe.ListenTCP(d.wan, "0.0.0.0:7777")
	if err != nil {
		return err
	}
	defer srvOut.Close()

	checks := []struct {
		what string
		run  func() (string, error)
	}{
		{"ns1 -> ns2 over the bridge (ICMP)", func() (string, error) { return ping(d.ctrs["ns1"], ip("ns2", "eth0")) }},
		{"ns1 -> bridge gateway 10.22.0.1 (ICMP)", func() (string, error) { return ping(d.ctrs["ns1"], net.ParseIP("10.22.0.1")) }},
		{"ns3 -> ptp gateway (ICMP)", func() (string, error) { return ping(d.ctrs["ns3"], gatewayOf(d, "ns3", "eth0")) }},
		{"ns1 -> ns2:7777 (TCP)", func() (string, error) {
			return tcp(d.ctrs["ns1"], net.JoinHostPort(ip("ns2", "eth0").String(), "7777"))
		}},
		{"ns1 -> ns3's ptp address, routed by the host (ICMP)", func() (string, error) { return ping(d.ctrs["ns1"], ip("ns3", "eth0")) }},
		{"ns1 -> outside 203.0.113.2:7777 through ipMasq (TCP)", func() (string, error) {
			return tcp(d.ctrs["ns1"], "203.0.113.2:7777")
		}},
	}
	var failed []string
	for _, c := range checks {
		if err := ctx.Err(); err != nil {
			return err
		}
		res, err := c.run()
		if err != nil {
			d.say("  FAIL %-55s %v", c.what, err)
			failed = append(failed, c.what)
			continue
		}
		d.say("  ok   %-55s %s", c.what, res)
	}
	if len(failed) > 0 {
		return fmt.Errorf("traffic checks failed: %s", strings.Join(failed, "; "))
	}
	return nil
}

func gatewayOf(d *Demo, ns, ifname string) net.IP {
	for _, a := range d.atts {
		if a.ns == ns && a.ifname == ifname && a.result != nil {
			for _, ip := range a.result.IPs {
				if ip.Gateway != nil {
					return ip.Gateway
				}
			}
		}
	}
	return nil
}

func ping(ns string, dst net.IP) (string, error) {
	if dst == nil {
		return "", errors.New("no address to ping")
	}
	rtt, err := probe.Ping(ns, dst, 2*time.Second)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s replied in %.3f ms", dst, float64(rtt.Microseconds())/1000), nil
}

func tcp(ns, addr string) (string, error) {
	from, rtt, err := probe.TCPRoundTrip(ns, addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("answered in %.3f ms; the server saw the connection come from %s", float64(rtt.Microseconds())/1000, from), nil
}

func (d *Demo) showTopology() error {
	nss := []topology.NS{{Name: "host", Path: d.host}, {Name: "outside", Path: d.wan}}
	for _, n := range []string{"ns1", "ns2", "ns3"} {
		nss = append(nss, topology.NS{Name: n, Path: d.ctrs[n]})
	}
	snap, err := topology.Capture(nss)
	if err != nil {
		return err
	}
	d.say("\ntopology:")
	snap.Text(d.opt.Out)
	return nil
}

// cleanup DELs every attachment (reverse order), then removes the namespaces.
func (d *Demo) cleanup() error {
	var errs []error
	if len(d.atts) > 0 {
		d.say("\ncleaning up:")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := len(d.atts) - 1; i >= 0; i-- {
		a := d.atts[i]
		err := netns.Do(d.host, func() error { return d.rt.DelNetworkList(ctx, a.net, d.rtConf(a)) })
		if err != nil {
			errs = append(errs, fmt.Errorf("DEL %s from %s: %w", a.ns, a.net.Name, err))
			continue
		}
		d.say("  DEL %-3s %-4s from %s", a.ns, a.ifname, a.net.Name)
	}
	for _, name := range []string{"ns1", "ns2", "ns3"} {
		if p, ok := d.ctrs[name]; ok {
			errs = append(errs, netns.DeletePath(p))
		}
	}
	for _, p := range []string{d.wan, d.host} {
		if p != "" {
			errs = append(errs, netns.DeletePath(p))
		}
	}
	err := errors.Join(errs...)
	if err == nil && d.host != "" {
		d.say("  removed the namespaces; nothing of the demo is left")
	}
	return err
}

func addrs(r *cni.Result) string {
	if r == nil {
		return ""
	}
	var s []string
	for _, ip := range r.IPs {
		s = append(s, ip.Address.String())
	}
	return strings.Join(s, ",")
}

func gateways(r *cni.Result) string {
	if r == nil {
		return ""
	}
	var s []string
	for _, ip := range r.IPs {
		if ip.Gateway != nil {
			s = append(s, "gw "+ip.Gateway.String())
		}
	}
	return strings.Join(s, ",")
}
