package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os/exec"
	"strings"
	"time"

	"github.com/knit-cni/knit/internal/netns"
	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
)

// dpScenario is one iperf3 path.
type dpScenario struct {
	key, label string
	net        string // network key; "" for the bare veth pair
	toHost     bool   // server in the host namespace at the gateway
}

var dpScenarios = []dpScenario{
	{key: "veth", label: "bare veth pair, netns ↔ netns"},
	{key: "handbridge", label: "bridge made by hand (ip link, no plugin, no rules), netns ↔ netns", net: "-"},
	{key: "bridge-c2c", label: "bridge, container ↔ container", net: "bridge"},
	{key: "bridge-c2h", label: "bridge, container → host (gateway)", net: "bridge", toHost: true},
	{key: "ptp-c2c", label: "ptp, container ↔ container (routed)", net: "ptp"},
	{key: "ptp-c2h", label: "ptp, container → host", net: "ptp", toHost: true},
}

// measureDataplane runs rounds of every scenario, each suite in turn, and
// returns Gbit/s samples keyed "suite/scenario" ("veth" for the bare pair).
func (l *lab) measureDataplane(ss []suite, rounds, seconds int) (map[string][]float64, error) {
	res := map[string][]float64{}
	for r := 0; r < rounds; r++ {
		for _, sc := range dpScenarios {
			if sc.net == "" || sc.net == "-" {
				g, err := l.dpVeth(seconds, sc.net == "-")
				if err != nil {
					return nil, err
				}
				res[sc.key] = append(res[sc.key], g)
				logf("dataplane round %d %-28s %.2f Gbit/s (load %s)", r+1, sc.key, g, loadavg())
				continue
			}
			for _, s := range rotate(ss, r) {
				n := networkByKey(sc.net)
				if !s.has(n) {
					continue
				}
				g, err := l.dpPlugins(s, n, sc.toHost, seconds)
				if err != nil {
					return nil, err
				}
				k := s.name + "/" + sc.key
				res[k] = append(res[k], g)
				logf("dataplane round %d %-28s %.2f Gbit/s (load %s)", r+1, k, g, loadavg())
			}
		}
	}
	return res, nil
}

// dpVeth joins two fresh namespaces with a bare veth pair and measures it;
// with bridged, each gets a veth into a third namespace instead, whose Linux
// bridge (made as `ip link` would, no plugin, no nftables rules) joins them:
// the kernel's own cost of a bridge hop, the floor under every bridge
// plugin's dataplane.
func (l *lab) dpVeth(seconds int, bridged bool) (float64, error) {
	a, err := l.newNS("va")
	if err != nil {
		return 0, err
	}
	defer netns.DeletePath(a)
	b, err := l.newNS("vb")
	if err != nil {
		return 0, err
	}
	defer netns.DeletePath(b)
	what := "bare veth"
	if bridged {
		what = "bridge made by hand"
		h, err := l.newNS("vh")
		if err != nil {
			return 0, err
		}
		defer netns.DeletePath(h)
		if err := handBridge(h, a, b); err != nil {
			return 0, fmt.Errorf("%s: %w", what, err)
		}
	} else if err := vethBetween(a, b, "eth0"); err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	for _, side := range []struct{ ns, addr string }{{a, "10.95.0.1/24"}, {b, "10.95.0.2/24"}} {
		err := netns.Do(side.ns, func() error {
			for _, name := range []string{"lo", "eth0"} {
				ln, err := netlink.LinkByName(name)
				if err != nil {
					return err
				}
				if name == "eth0" {
					ad, _ := netlink.ParseAddr(side.addr)
					if err := netlink.AddrAdd(ln, ad); err != nil {
						return err
					}
				}
				if err := netlink.LinkSetUp(ln); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return 0, fmt.Errorf("%s: %w", what, err)
		}
	}
	return iperf(a, b, "10.95.0.2", seconds)
}

// vethBetween creates a veth pair from namespace a (end "eth0") to b (end
// peer), both down.
func vethBetween(a, b, peer string) error {
	hb, err := vnetns.GetFromPath(b)
	if err != nil {
		return err
	}
	defer hb.Close()
	return netns.Do(a, func() error {
		return netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: peer, PeerNamespace: netlink.NsFd(hb)})
	})
}

// handBridge gives a and b each an eth0 whose peer is a port of bridge
// "br0" in h, everything in h up.
func handBridge(h, a, b string) error {
	for i, ns := range []string{a, b} {
		if err := vethBetween(ns, h, fmt.Sprintf("p%d", i)); err != nil {
			return err
		}
	}
	return netns.Do(h, func() error {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
		if err := netlink.LinkAdd(br); err != nil {
			return err
		}
		for _, name := range []string{"p0", "p1", "br0", "lo"} {
			ln, err := netlink.LinkByName(name)
			if err != nil {
				return err
			}
			if name[0] == 'p' {
				if err := netlink.LinkSetMasterByIndex(ln, br.Attrs().Index); err != nil {
					return err
				}
			}
			if err := netlink.LinkSetUp(ln); err != nil {
				return err
			}
		}
		return nil
	})
}

// dpPlugins attaches two containers with the suite's plugins and measures
// container to container, or container to the host namespace.
func (l *lab) dpPlugins(s suite, n network, toHost bool, seconds int) (float64, error) {
	h, err := l.newHost(s, n)
	if err != nil {
		return 0, err
	}
	defer h.close()
	cs, err := h.newContainers(2, 0)
	if err != nil {
		return 0, err
	}
	defer closeContainers(cs)
	for _, c := range cs {
		if _, err := h.run("add", c); err != nil {
			return 0, err
		}
	}
	defer func() {
		for _, c := range cs {
			if _, err := h.run("del", c); err != nil {
				logf("dataplane: %v", err)
			}
		}
	}()
	if toHost {
		// The gateway is the first address of the subnet.
		gw := netip.AddrFrom4([4]byte{10, cs[0].ip.As4()[1], 0, 1})
		return iperf(cs[0].ns, h.path, gw.String(), seconds)
	}
	return iperf(cs[0].ns, cs[1].ns, cs[1].ip.String(), seconds)
}

// iperf runs one iperf3 sample from clientNS to a server in serverNS.
func iperf(clientNS, serverNS, addr string, seconds int) (float64, error) {
	var srv *exec.Cmd
	err := netns.Do(serverNS, func() error {
		srv = exec.Command("iperf3", "-s", "-1", "-B", addr)
		srv.Stdout, srv.Stderr = io.Discard, io.Discard
		return srv.Start()
	})
	if err != nil {
		return 0, fmt.Errorf("starting iperf3 server: %w", err)
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	var r struct {
		Error string `json:"error"`
		End   struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	for try := 0; ; try++ {
		var out []byte
		err = netns.Do(clientNS, func() error {
			out, _ = exec.Command("iperf3", "-c", addr, "-t", fmt.Sprint(seconds), "-J").Output()
			return nil
		})
		if err != nil {
			return 0, err
		}
		r.Error = ""
		if err := json.Unmarshal(out, &r); err != nil {
			return 0, fmt.Errorf("iperf3 client output: %w", err)
		}
		if r.Error == "" && r.End.SumReceived.BitsPerSecond > 0 {
			break
		}
		// The server may not be listening yet.
		if try == 50 || !strings.Contains(r.Error, "connect") {
			return 0, fmt.Errorf("iperf3 to %s measured nothing: %s", addr, r.Error)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return r.End.SumReceived.BitsPerSecond / 1e9, nil
}
