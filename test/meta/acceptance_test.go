package meta

import (
	"testing"

	"github.com/knit-cni/knit/internal/nstest"
	"github.com/knit-cni/knit/internal/probe"
)

// TestAcceptanceFullConflist is the acceptance: bridge + host-local
// + portmap + bandwidth + firewall + tuning, run by the reference cnitool
// with a PATH holding no iptables, nft, tc or ip binary, gives a working
// published port, and DEL leaves the nftables ruleset and tc state exactly
// as before the ADD. The baseline is taken after one warm-up ADD+DEL: the
// bridge itself and knit's chains and maps are made once per host and kept
// (as the reference keeps its bridge and chains); GC removes the latter.
func TestAcceptanceFullConflist(t *testing.T) {
	l := newLab(t)
	name := l.conflist(nstest.UniqueName("acc"),
		bridgePlugin("kacc0", "10.94.0.0/24"),
		map[string]any{"type": "portmap", "capabilities": map[string]any{"portMappings": true}, "snat": true},
		map[string]any{"type": "bandwidth", "ingressRate": 100_000_000, "ingressBurst": 1_000_000,
			"egressRate": 100_000_000, "egressBurst": 1_000_000},
		map[string]any{"type": "firewall", "ingressPolicy": "same-bridge"},
		map[string]any{"type": "tuning", "sysctl": map[string]any{"net.ipv4.conf.IFNAME.arp_filter": "1"}},
	)
	caps := portMappings(map[string]any{"hostPort": 8443, "containerPort": 443, "protocol": "tcp"})
	ctr := nstest.New(t, "ac")
	srv, err := probe.ListenTCP(ctr, "0.0.0.0:443")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	l.add(name, ctr, caps) // warm-up: bridge, tables, chains
	l.del(name, ctr, caps)
	before := l.snapshot()

	l.add(name, ctr, caps)
	if err := tcpTo(l.client, hostAddr+":8443"); err != nil {
		t.Fatalf("published port: %v", err)
	}
	if _, err := l.cnitool(caps, "check", name, ctr); err != nil {
		t.Fatalf("CHECK of the whole chain: %v", err)
	}
	during := l.snapshot()
	if during == before {
		t.Fatal("ADD changed neither nftables nor tc (the snapshot sees nothing)")
	}
	l.del(name, ctr, caps)
	if after := l.snapshot(); after != before {
		t.Fatalf("state after DEL differs from before ADD:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if tcpTo(l.client, hostAddr+":8443") == nil {
		t.Fatal("published port answers after DEL")
	}
}
