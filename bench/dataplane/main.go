// Command dataplane measures container-to-container TCP throughput over a
// knit bridge, the reference bridge (Debian's containernetworking-plugins)
// and a bare veth pair, in one run with the suites taking turns, using
// iperf3 between test-made namespaces. Nothing touches the root namespace.
//
//	go run ./bench/dataplane -knit DIR [-ref /usr/lib/cni] [-rounds 3] [-seconds 5]
//
// DIR holds knit's plugin links (knit install --dir DIR). It prints a
// markdown table of medians and ratios and, with -out, writes it to a file.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/knit-cni/knit/internal/netns"
	"github.com/knit-cni/knit/pkg/cni"
	"github.com/knit-cni/knit/pkg/cni/runtime"
	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
)

var (
	knitDir = flag.String("knit", "bin/plugins", "directory with knit's plugin links")
	refDir  = flag.String("ref", "/usr/lib/cni", "directory with the reference plugins (empty: skip)")
	rounds  = flag.Int("rounds", 3, "rounds; each runs every suite once, in turn")
	seconds = flag.Int("seconds", 5, "iperf3 duration per sample")
	out     = flag.String("out", "", "also write the markdown table to this file")
)

const bridgeConf = `{"cniVersion":"1.0.0","name":"benchdp","plugins":[{"type":"bridge","bridge":"benchbr0","isGateway":true,"ipMasq":true,
 "ipam":{"type":"host-local","subnet":"10.98.0.0/16","dataDir":%q}}]}`

type env struct {
	prefix string
	made   []string
}

func (e *env) ns(name string) string {
	p, err := netns.Create("", e.prefix+name)
	if err != nil {
		panic(err)
	}
	e.made = append(e.made, p)
	return p
}

func (e *env) cleanup() {
	for _, p := range e.made {
		if err := netns.DeletePath(p); err != nil {
			log.Print(err)
		}
	}
	e.made = nil
}

func handle(path string) (*netlink.Handle, vnetns.NsHandle) {
	h, err := vnetns.GetFromPath(path)
	if err != nil {
		panic(err)
	}
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		panic(err)
	}
	return nl, h
}

// rawVeth makes two namespaces joined by a bare veth pair and returns them
// with the server address.
func (e *env) rawVeth() (client, server, addr string) {
	a, b := e.ns("rawa"), e.ns("rawb")
	na, ha := handle(a)
	defer ha.Close()
	defer na.Close()
	nb, hb := handle(b)
	defer hb.Close()
	defer nb.Close()
	if err := na.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "eth0", PeerNamespace: netlink.NsFd(hb)}); err != nil {
		panic(err)
	}
	for _, x := range []struct {
		h *netlink.Handle
		a string
	}{{na, "10.97.0.1/24"}, {nb, "10.97.0.2/24"}} {
		for _, name := range []string{"eth0", "lo"} {
			l, err := x.h.LinkByName(name)
			if err != nil {
				panic(err)
			}
			if name == "eth0" {
				ad, _ := netlink.ParseAddr(x.a)
				if err := x.h.AddrAdd(l, ad); err != nil {
					panic(err)
				}
			}
			if err := x.h.LinkSetUp(l); err != nil {
				panic(err)
			}
		}
	}
	return a, b, "10.97.0.2"
}

// bridge attaches two containers to a bridge network with the plugins in dir.
func (e *env) bridge(tag, dir string) (client, server, addr string, teardown func()) {
	host := e.ns(tag + "host")
	c1, c2 := e.ns(tag+"c1"), e.ns(tag+"c2")
	work, err := os.MkdirTemp("", "knit-bench-")
	if err != nil {
		panic(err)
	}
	list, err := cni.ParseConfigList([]byte(fmt.Sprintf(bridgeConf, filepath.Join(work, "ipam"))))
	if err != nil {
		panic(err)
	}
	rt := runtime.New(runtime.Config{Paths: []string{dir}, CacheDir: filepath.Join(work, "cache")})
	ctx := context.Background()
	var res *cni.Result
	for i, c := range []string{c1, c2} {
		conf := &runtime.RuntimeConf{ContainerID: fmt.Sprintf("%s%d", tag, i), NetNS: c, IfName: "eth0"}
		err := netns.Do(host, func() error {
			var err error
			res, err = rt.AddNetworkList(ctx, list, conf)
			return err
		})
		if err != nil {
			panic(fmt.Sprintf("%s: ADD: %v", tag, err))
		}
	}
	teardown = func() {
		for i, c := range []string{c1, c2} {
			conf := &runtime.RuntimeConf{ContainerID: fmt.Sprintf("%s%d", tag, i), NetNS: c, IfName: "eth0"}
			if err := netns.Do(host, func() error { return rt.DelNetworkList(ctx, list, conf) }); err != nil {
				log.Printf("%s: DEL: %v", tag, err)
			}
		}
		os.RemoveAll(work)
	}
	return c1, c2, res.IPs[0].Address.IP.String(), teardown
}

// iperf runs one iperf3 sample from client to a server in serverNS.
func iperf(clientNS, serverNS, addr string) (float64, error) {
	var srv *exec.Cmd
	err := netns.Do(serverNS, func() error {
		srv = exec.Command("iperf3", "-s", "-1", "-B", addr)
		srv.Stdout, srv.Stderr = io.Discard, io.Discard
		return srv.Start()
	})
	if err != nil {
		return 0, fmt.Errorf("starting iperf3 server: %w", err)
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	var outb []byte
	for try := 0; try < 50; try++ {
		err = netns.Do(clientNS, func() error {
			var err error
			outb, err = exec.Command("iperf3", "-c", addr, "-t", fmt.Sprint(*seconds), "-J").Output()
			return err
		})
		if err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond) // server not listening yet
	}
	if err != nil {
		return 0, fmt.Errorf("iperf3 client: %w", err)
	}
	var r struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal(outb, &r); err != nil {
		return 0, err
	}
	return r.End.SumReceived.BitsPerSecond / 1e9, nil
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func main() {
	flag.Parse()
	if _, err := exec.LookPath("iperf3"); err != nil {
		panic("iperf3 is needed: apt-get install iperf3")
	}
	suites := []string{"veth", "knit"}
	if *refDir != "" {
		suites = append(suites, "ref")
	}
	e := &env{prefix: fmt.Sprintf("kbdp%d", os.Getpid())}
	defer func() {
		r := recover()
		e.cleanup()
		if r != nil {
			fmt.Fprintln(os.Stderr, "dataplane:", r)
			os.Exit(1)
		}
	}()
	res := map[string][]float64{}
	for r := 0; r < *rounds; r++ {
		for _, s := range suites {
			var c, sv, addr string
			teardown := func() {}
			switch s {
			case "veth":
				c, sv, addr = e.rawVeth()
			case "knit":
				c, sv, addr, teardown = e.bridge("k", *knitDir)
			case "ref":
				c, sv, addr, teardown = e.bridge("r", *refDir)
			}
			g, err := iperf(c, sv, addr)
			teardown()
			e.cleanup()
			if err != nil {
				panic(fmt.Sprintf("%s: %v", s, err))
			}
			fmt.Fprintf(os.Stderr, "round %d %-5s %.2f Gbit/s\n", r+1, s, g)
			res[s] = append(res[s], g)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "### Dataplane: iperf3 TCP, 1 stream, %d s × %d rounds, Gbit/s (%s)\n\n", *seconds, *rounds, time.Now().UTC().Format("2006-01-02"))
	fmt.Fprintf(&b, "| path | median | samples | vs bare veth |\n|---|---|---|---|\n")
	base := median(res["veth"])
	names := map[string]string{"veth": "bare veth pair (netns ↔ netns)", "knit": "knit bridge (container ↔ container)", "ref": "reference bridge " + *refDir}
	for _, s := range suites {
		var ss []string
		for _, x := range res[s] {
			ss = append(ss, fmt.Sprintf("%.2f", x))
		}
		fmt.Fprintf(&b, "| %s | %.2f | %s | %.1f %% |\n", names[s], median(res[s]), strings.Join(ss, ", "), 100*median(res[s])/base)
	}
	fmt.Print(b.String())
	if *out != "" {
		if err := os.WriteFile(*out, []byte(b.String()), 0o644); err != nil {
			panic(err)
		}
	}
}
