// Package meta holds end-to-end tests of knit's chained (meta) plugins driven
// by the reference cnitool: portmap, firewall, and the full
// bridge + host-local + portmap + bandwidth + firewall + tuning conflist.
package meta

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/knit-cni/knit/internal/nft"
	"github.com/knit-cni/knit/internal/nstest"
	"github.com/knit-cni/knit/internal/probe"
	vnetns "github.com/vishvananda/netns"
)

func tcpTo(ns, addr string) error {
	_, _, err := probe.TCPRoundTrip(ns, addr, 3*time.Second)
	return err
}

// TestPortmapTCPAndUDP: a published TCP port reaches the container's
// listener from another namespace and is refused after DEL; a UDP mapping
// moved to another container by DEL + ADD of the same host port answers
// from the new one on the same client flow (conntrack flushed).
func TestPortmapTCPAndUDP(t *testing.T) {
	l := newLab(t)
	net1 := l.conflist(nstest.UniqueName("pm"), bridgePlugin("kpm0", "10.91.0.0/24"),
		map[string]any{"type": "portmap", "capabilities": map[string]any{"portMappings": true}})
	c1, c2 := nstest.New(t, "m1"), nstest.New(t, "m2")
	srv, err := probe.ListenTCP(c1, "0.0.0.0:80")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	udpEcho(t, c1, 53, "c1")
	udpEcho(t, c2, 53, "c2")
	caps := portMappings(
		map[string]any{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
		map[string]any{"hostPort": 5300, "containerPort": 53, "protocol": "udp"})

	target := hostAddr + ":8080"
	if tcpTo(l.client, target) == nil {
		t.Fatal("host port answers before ADD (test topology broken)")
	}
	l.add(net1, c1, caps)
	if err := tcpTo(l.client, target); err != nil {
		t.Fatalf("published port: %v", err)
	}
	udp := newUDPClient(t, l.client, hostAddr+":5300")
	if got := udp.ask(); got != "c1" {
		t.Fatalf("UDP mapping answered %q, want c1", got)
	}
	if _, err := l.cnitool(caps, "check", net1, c1); err != nil {
		t.Fatal(err)
	}
	l.del(net1, c1, caps)
	if tcpTo(l.client, target) == nil {
		t.Fatal("published port still answers after DEL")
	}
	l.add(net1, c2, caps)
	if got := udp.ask(); got != "c2" {
		t.Fatalf("after DEL c1 + ADD c2 the same UDP flow got %q, want c2 (stale conntrack entry?)", got)
	}
	l.del(net1, c2, caps)
}

// TestFirewallSameBridge: with ingressPolicy same-bridge, containers on two
// bridges cannot reach each other while containers on one bridge can; the
// same topology with the open policy routes between the bridges.
func TestFirewallSameBridge(t *testing.T) {
	l := newLab(t)
	fwIso := map[string]any{"type": "firewall", "ingressPolicy": "same-bridge"}
	netA := l.conflist(nstest.UniqueName("fa"), bridgePlugin("kfa0", "10.92.1.0/24"), fwIso)
	netBOpen := l.conflist(nstest.UniqueName("fo"), bridgePlugin("kfb0", "10.92.2.0/24"), map[string]any{"type": "firewall"})
	netB := l.conflist(nstest.UniqueName("fb"), bridgePlugin("kfb0", "10.92.2.0/24"), fwIso)
	a1, a2, b1 := nstest.New(t, "a1"), nstest.New(t, "a2"), nstest.New(t, "b1")
	ipA1 := l.add(netA, a1, nil)
	ipA2 := l.add(netA, a2, nil)
	reach := func(from string, to net.IP) bool {
		_, err := probe.Ping(from, to, time.Second)
		return err == nil
	}
	ipB1 := l.add(netBOpen, b1, nil)
	if !reach(a1, ipB1) {
		t.Fatal("an isolated bridge cannot reach an open one (or the topology is broken)")
	}
	l.del(netBOpen, b1, nil)
	ipB1 = l.add(netB, b1, nil)
	if reach(a1, ipB1) || reach(b1, ipA1) {
		t.Fatal("containers on two same-bridge networks reach each other")
	}
	if !reach(a1, ipA2) || !reach(a2, ipA1) {
		t.Fatal("containers on the same isolated bridge cannot reach each other")
	}
	if _, err := l.cnitool(nil, "check", netB, b1); err != nil {
		t.Fatal(err)
	}
	for _, x := range []struct{ n, ns string }{{netA, a1}, {netA, a2}, {netB, b1}} {
		l.del(x.n, x.ns, nil)
	}
}

// TestGCRemovesStaleEntries: the plugins' GC with one attachment in
// cni.dev/valid-attachments removes the other attachment's port mappings
// and firewall entries and keeps the valid one's.
func TestGCRemovesStaleEntries(t *testing.T) {
	l := newLab(t)
	name := nstest.UniqueName("gc")
	pmConf := map[string]any{"type": "portmap", "capabilities": map[string]any{"portMappings": true}}
	l.conflist(name, bridgePlugin("kgc0", "10.93.0.0/24"), pmConf, map[string]any{"type": "firewall"})
	c1, c2 := nstest.New(t, "g1"), nstest.New(t, "g2")
	ip1 := l.add(name, c1, portMappings(map[string]any{"hostPort": 7001, "containerPort": 80, "protocol": "tcp"}))
	ip2 := l.add(name, c2, portMappings(map[string]any{"hostPort": 7002, "containerPort": 80, "protocol": "udp"}))

	valid := fmt.Sprintf(`"cni.dev/valid-attachments":[{"containerID":%q,"ifname":"eth0"}]`, containerID(c1))
	for _, typ := range []string{"portmap", "firewall"} {
		stdin := fmt.Appendf(nil, `{"cniVersion":"1.1.0","name":%q,"type":%q,%s}`, name, typ, valid)
		r := nstest.Exec(t, l.host, l.plugins, typ, "GC", nil, stdin)
		if r.ExitCode != 0 {
			t.Fatalf("%s GC: %s", typ, r.Stdout)
		}
	}
	h, err := vnetns.GetFromPath(l.host)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	opts := []nft.Option{nft.WithNetNS(int(h))}
	entries, err := nft.NewPortMap(opts...).List()
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Owner.ContainerID != containerID(c1) || entries[0].Mapping.HostPort != 7001 {
		t.Fatalf("port mappings after GC: %+v, want only c1's 7001", entries)
	}
	o := func(ns string) nft.Owner {
		return nft.Owner{Network: name, ContainerID: containerID(ns), IfName: "eth0"}
	}
	fw := nft.NewFirewall(opts...)
	if err := fw.Check(o(c1), []net.IPNet{{IP: ip1, Mask: net.CIDRMask(24, 32)}}, ""); err != nil {
		t.Errorf("valid attachment's firewall entry after GC: %v", err)
	}
	if err := fw.Check(o(c2), []net.IPNet{{IP: ip2, Mask: net.CIDRMask(24, 32)}}, ""); err == nil {
		t.Error("stale attachment's firewall entry survived GC")
	}
	if err := tcpTo(l.client, hostAddr+":7001"); err == nil {
		// nothing listens in c1: a refusal proves the DNAT reached it;
		// a timeout would too, so only the entries are asserted above.
		t.Log("7001 answered")
	}
	l.del(name, c1, portMappings(map[string]any{"hostPort": 7001, "containerPort": 80, "protocol": "tcp"}))
	l.del(name, c2, portMappings(map[string]any{"hostPort": 7002, "containerPort": 80, "protocol": "udp"}))
}
