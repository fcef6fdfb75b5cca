package portmap

import (
	"net"
	"os"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/knit-cni/knit/internal/link"
	"github.com/knit-cni/knit/internal/netns"
	"github.com/knit-cni/knit/internal/nstest"
)

// enableLocalnet sets route_localnet on the interface toward the container
// once; localnetSet reads it back over netlink.
func TestEnableLocalnet(t *testing.T) {
	host := nstest.New(t, "pml")
	nstest.Run(t, host, "ip", "link", "add", "hv0", "type", "veth", "peer", "name", "hv1")
	nstest.Run(t, host, "ip", "addr", "add", "10.99.0.1/24", "dev", "hv0")
	nstest.Run(t, host, "ip", "link", "set", "hv0", "up")
	proc := func() string {
		b, err := os.ReadFile("/proc/sys/net/ipv4/conf/hv0/route_localnet")
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	err := netns.Do(host, func() error {
		l, err := netlink.LinkByName("hv0")
		if err != nil {
			return err
		}
		if localnetSet(l) || proc() != "0" {
			t.Fatalf("route_localnet already set on a new link (netlink %v, /proc %s)", localnetSet(l), proc())
		}
		ctr := []net.IPNet{{IP: net.IPv4(10, 99, 0, 2), Mask: net.CIDRMask(24, 32)}}
		if err := enableLocalnet(ctr); err != nil {
			return err
		}
		if proc() != "1" || !localnetSet(l) {
			t.Errorf("after enableLocalnet: /proc %s, netlink %v; want 1, true", proc(), localnetSet(l))
		}
		return enableLocalnet(ctr) // already set: nothing to write
	})
	if err != nil {
		t.Fatal(err)
	}
}

// localnetSet reports whether l's route_localnet is already 1 (false when
// it cannot tell).
func localnetSet(l netlink.Link) bool {
	id, _ := link.IPv4ConfID("route_localnet")
	ns, err := link.Current()
	if err != nil {
		return false
	}
	defer ns.Close()
	conf, err := link.IPv4Conf(ns, l)
	return err == nil && conf[id] == 1
}
