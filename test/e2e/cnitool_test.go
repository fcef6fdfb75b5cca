package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/knit-cni/knit/internal/kfeature"
)

// cnitoolCase is one network the reference cnitool drives through ADD,
// CHECK, STATUS and DEL against the knit plugins.
type cnitoolCase struct {
	name     string
	ifname   string
	features []kfeature.Feature
	plugins  []map[string]any
	capArgs  string                        // CAP_ARGS
	hostLink string                        // a veth made in the host namespace first (this kernel may lack dummy)
	leaves   string                        // a host link the plugin keeps after DEL (a bridge), removed at cleanup
	noCheck  string                        // why CHECK is not run
	verify   func(t *testing.T, ns string) // after ADD
	ping     bool                          // the host reaches the container's first address
	after    func(t *testing.T, ns string)
}

func hostLocal(subnet string) map[string]any {
	return map[string]any{"type": "host-local", "ranges": [][]map[string]string{{{"subnet": subnet}}}}
}

func cnitoolCases() []cnitoolCase {
	ptp := func(subnet string) map[string]any {
		return map[string]any{"type": "ptp", "ipam": hostLocal(subnet)}
	}
	master := marker + "m0"
	return []cnitoolCase{
		{name: "loopback", ifname: "lo", plugins: []map[string]any{{"type": "loopback"}}},
		{name: "bridge", ping: true, leaves: marker + "br9", plugins: []map[string]any{{"type": "bridge", "bridge": marker + "br9", "isGateway": true, "ipam": hostLocal("10.89.90.0/24")}}},
		{name: "ptp", ping: true, plugins: []map[string]any{ptp("10.89.91.0/24")}},
		{name: "macvlan", hostLink: master, features: []kfeature.Feature{kfeature.Macvlan},
			plugins: []map[string]any{{"type": "macvlan", "master": master, "ipam": hostLocal("10.89.92.0/24")}}},
		{name: "ipvlan", hostLink: master, features: []kfeature.Feature{kfeature.IPVlan},
			plugins: []map[string]any{{"type": "ipvlan", "master": master, "ipam": hostLocal("10.89.93.0/24")}}},
		{name: "vlan", hostLink: master, features: []kfeature.Feature{kfeature.Vlan},
			plugins: []map[string]any{{"type": "vlan", "master": master, "vlanId": 42, "ipam": hostLocal("10.89.94.0/24")}}},
		{name: "dummy", features: []kfeature.Feature{kfeature.Dummy}, plugins: []map[string]any{{"type": "dummy", "ipam": hostLocal("10.89.95.0/24")}}},
		{name: "static", ping: true, plugins: []map[string]any{{"type": "ptp", "ipam": map[string]any{
			"type": "static", "addresses": []map[string]string{{"address": "10.89.96.2/24"}}}}}},
		{name: "tap", features: []kfeature.Feature{kfeature.Tun},
			plugins: []map[string]any{{"type": "tap", "ipam": hostLocal("10.89.97.0/24")}}},
		{name: "host-device", hostLink: marker + "hd0",
			plugins: []map[string]any{{"type": "host-device", "device": marker + "hd0"}},
			after: func(t *testing.T, _ string) {
				if !contains(links(t), marker+"hd0") {
					t.Errorf("after DEL, %shd0 is not back in the host namespace", marker)
				}
			}},
		{name: "vrf", ping: true, features: []kfeature.Feature{kfeature.VRF},
			plugins: []map[string]any{ptp("10.89.98.0/24"), {"type": "vrf", "vrfname": marker + "vrf"}}},
		{name: "tuning", ping: true, plugins: []map[string]any{ptp("10.89.99.0/24"),
			{"type": "tuning", "mtu": 1400, "sysctl": map[string]string{"net.ipv4.conf.eth0.arp_notify": "1"}}},
			verify: func(t *testing.T, ns string) {
				if out := ipNetns(t, ns, "link", "show", "eth0"); !strings.Contains(out, "mtu 1400") {
					t.Errorf("tuning did not set mtu 1400: %s", out)
				}
			}},
		{name: "bandwidth", ping: true, features: []kfeature.Feature{kfeature.IFB}, plugins: []map[string]any{ptp("10.89.100.0/24"),
			{"type": "bandwidth", "ingressRate": 8000000, "ingressBurst": 80000, "egressRate": 8000000, "egressBurst": 80000}}},
		{name: "portmap", ping: true, verify: func(t *testing.T, _ string) {
			if rules := nftRuleset(t); !strings.Contains(rules, "18090") {
				t.Errorf("no nftables mapping for host port 18090:\n%s", rules)
			}
		}, capArgs: `{"portMappings":[{"hostPort":18090,"containerPort":80,"protocol":"tcp"}]}`,
			plugins: []map[string]any{ptp("10.89.101.0/24"), {"type": "portmap", "capabilities": map[string]bool{"portMappings": true}}}},
		{name: "firewall", ping: true, plugins: []map[string]any{ptp("10.89.102.0/24"), {"type": "firewall"}}},
		{name: "sbr", plugins: []map[string]any{ptp("10.89.103.0/24"), {"type": "sbr"}},
			noCheck: "ptp's CHECK looks for its routes in the main table, which sbr has moved; the reference ptp+sbr fails CHECK the same way",
			verify: func(t *testing.T, ns string) {
				if rules := ipNetns(t, ns, "rule"); !strings.Contains(rules, "from 10.89.103.") {
					t.Errorf("no source rule for the container's address:\n%s", rules)
				}
			}},
	}
}

func contains(list []string, s string) bool {
	for _, l := range list {
		if l == s {
			return true
		}
	}
	return false
}

// cniResult is the part of a result the checks read.
type cniResult struct {
	Interfaces []struct {
		Name    string `json:"name"`
		Sandbox string `json:"sandbox"`
	} `json:"interfaces"`
	IPs []struct {
		Address   string `json:"address"`
		Interface *int   `json:"interface"`
	} `json:"ips"`
}

func TestCnitool(t *testing.T) {
	enabled(t)
	var ran, skipped []string
	for i, c := range cnitoolCases() {
		t.Run(c.name, func(t *testing.T) {
			for _, p := range c.plugins {
				typ := p["type"].(string)
				if !hasPlugin(t, typ) {
					skipped = append(skipped, c.name+" (no knit "+typ+" yet)")
					t.Skipf("knit-plugin has no %s plugin", typ)
				}
			}
			for _, f := range c.features {
				if err := kfeature.Check(f); err != nil {
					skipped = append(skipped, c.name+" (kernel: "+f.String()+")")
					t.Skipf("this kernel lacks %s: %v", f, err)
				}
			}
			cnitoolRun(t, i, c)
			ran = append(ran, c.name)
		})
	}
	t.Logf("cnitool ran ADD/CHECK/STATUS/DEL over: %s", strings.Join(ran, ", "))
	if len(skipped) > 0 {
		t.Logf("not run: %s", strings.Join(skipped, ", "))
	}
}

func cnitoolRun(t *testing.T, i int, c cnitoolCase) {
	net := fmt.Sprintf("%s-t%d", marker, i)
	ns := fmt.Sprintf("%s-ct%d", marker, i)
	nsPath := "/run/netns/" + ns
	dir := scratch("cnitool", c.name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeJSON(t, filepath.Join(dir, net+".conflist"), map[string]any{"cniVersion": "1.1.0", "name": net, "plugins": c.plugins})
	ifname := c.ifname
	if ifname == "" {
		ifname = "eth0"
	}
	env := []string{"NETCONFPATH=" + dir, "CNI_PATH=" + pluginDir, "CNI_IFNAME=" + ifname}
	if c.capArgs != "" {
		env = append(env, "CAP_ARGS="+c.capArgs)
	}
	cnitool := binPath("cnitool")

	run(t, nil, "ip", "netns", "add", ns)
	deleted := false
	t.Cleanup(func() {
		if !deleted {
			_, _ = output(env, cnitool, "del", net, nsPath)
		}
		_, _ = output(nil, "ip", "netns", "del", ns)
		for _, l := range []string{c.hostLink, c.leaves} {
			if l != "" {
				_, _ = output(nil, "ip", "link", "del", l)
			}
		}
	})
	if c.hostLink != "" {
		run(t, nil, "ip", "link", "add", c.hostLink, "type", "veth", "peer", "name", c.hostLink+"p")
		run(t, nil, "ip", "link", "set", c.hostLink, "up")
	}

	out := run(t, env, cnitool, "add", net, nsPath)
	var res cniResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("cnitool add printed no result: %v\n%s", err, out)
	}
	addrs := ipNetns(t, ns, "-o", "addr")
	var inNS []string
	for _, ifc := range res.Interfaces {
		if ifc.Sandbox != "" {
			ipNetns(t, ns, "link", "show", ifc.Name)
			inNS = append(inNS, ifc.Name)
		}
	}
	for _, ip := range res.IPs {
		if !strings.Contains(addrs, " "+ip.Address+" ") {
			t.Errorf("address %s of the result is not in the container:\n%s", ip.Address, addrs)
		}
	}
	if c.ping {
		if len(res.IPs) == 0 {
			t.Fatal("no address to ping")
		}
		run(t, nil, "busybox", "ping", "-c1", "-W2", strings.Split(res.IPs[0].Address, "/")[0])
	}
	if c.verify != nil {
		c.verify(t, ns)
	}
	if c.noCheck == "" {
		run(t, env, cnitool, "check", net, nsPath)
	} else {
		t.Logf("CHECK not run: %s", c.noCheck)
	}
	run(t, env, cnitool, "status", net, nsPath)
	run(t, env, cnitool, "del", net, nsPath)
	deleted = true
	if c.ifname != "lo" {
		for _, name := range inNS {
			if _, err := output(nil, "ip", "-n", ns, "link", "show", name); err == nil {
				t.Errorf("after DEL, %s is still in the container", name)
			}
		}
	}
	if ips := leasedIPs(t, net); len(ips) > 0 {
		t.Errorf("after DEL, host-local still holds %v", ips)
	}
	if files := cacheFiles(t, net); len(files) > 0 {
		t.Errorf("after DEL, cache files %v", files)
	}
	for _, ip := range res.IPs {
		a := strings.Split(ip.Address, "/")[0]
		if rules := nftRuleset(t); strings.Contains(rules, a+" ") || strings.Contains(rules, a+"\n") {
			t.Errorf("after DEL, nftables still mentions %s:\n%s", a, rules)
		}
	}
	if c.after != nil {
		c.after(t, ns)
	}
}
