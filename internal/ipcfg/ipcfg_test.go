package ipcfg

import (
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/knit-cni/knit/internal/link"
	"github.com/knit-cni/knit/internal/netns"
	"github.com/knit-cni/knit/internal/nstest"
	"github.com/knit-cni/knit/internal/sysctl"
	"github.com/knit-cni/knit/pkg/cni"
	"github.com/vishvananda/netlink"
)

func setup(t *testing.T) (host, cont *link.Namespace, pair *link.VethPair) {
	t.Helper()
	var err error
	if host, err = link.Open(nstest.New(t, "ih")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(host.Close)
	if cont, err = link.Open(nstest.New(t, "ic")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cont.Close)
	if pair, err = link.CreateVeth(host, cont, link.Veth{ContainerName: "eth0", HostUp: true}); err != nil {
		t.Fatal(err)
	}
	return host, cont, pair
}

func mustResult(t *testing.T, s string) *cni.Result {
	t.Helper()
	r, err := cni.ParseResult([]byte(s), "1.1.0")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestConfigureDualStackAndCheck(t *testing.T) {
	_, cont, pair := setup(t)
	res := mustResult(t, `{"cniVersion":"1.1.0",
		"interfaces":[{"name":"eth0","sandbox":"x"}],
		"ips":[{"interface":0,"address":"10.5.0.7/24","gateway":"10.5.0.1"},
		       {"interface":0,"address":"fd00:5::7/64","gateway":"fd00:5::1"},
		       {"interface":1,"address":"10.99.0.1/24"}],
		"routes":[{"dst":"0.0.0.0/0"},{"dst":"::/0"},
		          {"dst":"192.168.50.0/24","gw":"10.5.0.254","priority":77,"mtu":1300,"advmss":1200},
		          {"dst":"192.168.60.0/24","table":100}]}`)
	start := time.Now()
	err := Configure(cont, pair.Container, res, Options{Index: 0, DAD: DADOff,
		Sysctls: []sysctl.Setting{{Key: sysctl.IfaceKey("ipv4", "conf", "eth0", "arp_notify"), Value: "1"}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Configure took %s", time.Since(start))

	ips := IPsFor(res, 0)
	if len(ips) != 2 {
		t.Fatalf("IPsFor(0) = %d IPs; want 2", len(ips))
	}
	if err := CheckAddresses(cont, pair.Container, ips); err != nil {
		t.Fatal(err)
	}
	if err := CheckRoutes(cont, pair.Container, res.Routes, ips); err != nil {
		t.Fatal(err)
	}
	// The address of interface 1 was not applied.
	if err := CheckAddresses(cont, pair.Container, res.IPs[2:]); !IsMissing(err) {
		t.Errorf("address of another interface: %v; want missing", err)
	}
	var v string
	_ = netns.Do(cont.Path, func() (err error) { v, err = sysctl.Get(sysctl.IfaceKey("ipv4", "conf", "eth0", "arp_notify")); return })
	if v != "1" {
		t.Errorf("arp_notify = %q", v)
	}
	_ = netns.Do(cont.Path, func() (err error) { v, err = sysctl.Get(sysctl.IfaceKey("ipv6", "conf", "eth0", "accept_dad")); return })
	if v != "0" {
		t.Errorf("accept_dad = %q", v)
	}
	// 1.1 route fields reached the kernel.
	rs, _ := cont.Handle.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Dst: &net.IPNet{IP: net.IPv4(192, 168, 50, 0).To4(), Mask: net.CIDRMask(24, 32)}}, netlink.RT_FILTER_DST)
	if len(rs) != 1 || rs[0].Priority != 77 || rs[0].MTU != 1300 || rs[0].AdvMSS != 1200 || !rs[0].Gw.Equal(net.ParseIP("10.5.0.254")) {
		t.Errorf("route 192.168.50.0/24 = %+v", rs)
	}

	// Remove the default route behind our back: CHECK's validator says so.
	def := toNetlink(res.Routes[0], pair.Container.Attrs().Index, net.ParseIP("10.5.0.1"), nil)
	if err := cont.Handle.RouteDel(&def); err != nil {
		t.Fatal(err)
	}
	err = CheckRoutes(cont, pair.Container, res.Routes, ips)
	if !IsMissing(err) || !strings.Contains(err.Error(), "0.0.0.0/0 via 10.5.0.1") {
		t.Errorf("CheckRoutes after removal = %v", err)
	}
	// Remove an address.
	a := &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP("fd00:5::7"), Mask: net.CIDRMask(64, 128)}}
	if err := cont.Handle.AddrDel(pair.Container, a); err != nil {
		t.Fatal(err)
	}
	if err := CheckAddresses(cont, pair.Container, ips); !IsMissing(err) || !strings.Contains(err.Error(), "fd00:5::7/64") {
		t.Errorf("CheckAddresses after removal = %v", err)
	}
}

func TestConfigureWaitsForDAD(t *testing.T) {
	_, cont, pair := setup(t)
	res := mustResult(t, `{"cniVersion":"1.1.0","ips":[{"address":"fd00:6::7/64","gateway":"fd00:6::1"}],"routes":[{"dst":"::/0"}]}`)
	start := time.Now()
	if err := Configure(cont, pair.Container, res, Options{Index: -1, DAD: DADKernel}); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	n, err := tentative(cont, pair.Container)
	if err != nil || n != 0 {
		t.Fatalf("after Configure %d tentative addresses (%v); want 0", n, err)
	}
	t.Logf("DAD wait took %s", took)
}

func TestNoPrefixRouteAndLinkRoutes(t *testing.T) {
	_, cont, pair := setup(t)
	res := mustResult(t, `{"cniVersion":"1.1.0","ips":[{"address":"10.7.0.5/24","gateway":"10.7.0.1"}],"routes":[{"dst":"0.0.0.0/0"}]}`)
	gw := net.ParseIP("10.7.0.1").To4()
	opt := Options{Index: -1, NoPrefixRoute: true, LinkRoutes: []netlink.Route{
		{Dst: &net.IPNet{IP: gw, Mask: net.CIDRMask(32, 32)}, Scope: netlink.SCOPE_LINK},
		{Dst: &net.IPNet{IP: net.IPv4(10, 7, 0, 0).To4(), Mask: net.CIDRMask(24, 32)}, Gw: gw},
	}}
	if err := Configure(cont, pair.Container, res, opt); err != nil {
		t.Fatal(err)
	}
	rs, _ := cont.Handle.RouteList(pair.Container, netlink.FAMILY_V4)
	var got []string
	for _, r := range rs {
		b, _ := json.Marshal(struct {
			Dst string
			Gw  string
		}{r.Dst.String(), r.Gw.String()})
		got = append(got, string(b))
	}
	want := []string{`{"Dst":"0.0.0.0/0","Gw":"10.7.0.1"}`, `{"Dst":"10.7.0.0/24","Gw":"10.7.0.1"}`, `{"Dst":"10.7.0.1/32","Gw":"\u003cnil\u003e"}`}
	for _, w := range want {
		if !strings.Contains(strings.Join(got, " "), w) {
			t.Errorf("routes %v lack %s", got, w)
		}
	}
	if len(got) != 3 {
		t.Errorf("routes %v; want exactly 3 (no kernel prefix route)", got)
	}
}

// applyIPv4Conf writes the link's own plain IPv4 settings over netlink and
// leaves everything else (other links, side-effect settings, IPv6, odd
// values) to /proc/sys, in order.
func TestApplyIPv4ConfSplit(t *testing.T) {
	_, cont, pair := setup(t)
	k := func(fam, ifname, name string) string { return sysctl.IfaceKey(fam, "conf", ifname, name) }
	in := []sysctl.Setting{
		{Key: k("ipv4", "eth0", "arp_notify"), Value: "1"},
		{Key: k("ipv4", "eth0", "rp_filter"), Value: "2"},
		{Key: k("ipv4", "eth1", "arp_notify"), Value: "1"},
		{Key: k("ipv6", "eth0", "accept_dad"), Value: "0"},
		{Key: k("ipv4", "eth0", "arp_ignore"), Value: "01"},
		{Key: k("ipv4", "eth0", "arp_announce"), Value: "2"},
	}
	rest, err := applyIPv4Conf(cont, pair.Container, in)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range rest {
		got = append(got, s.Key+"="+s.Value)
	}
	want := []string{k("ipv4", "eth0", "rp_filter") + "=2", k("ipv4", "eth1", "arp_notify") + "=1",
		k("ipv6", "eth0", "accept_dad") + "=0", k("ipv4", "eth0", "arp_ignore") + "=01"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("left for /proc/sys: %v; want %v", got, want)
	}
	for key, v := range map[string]string{k("ipv4", "eth0", "arp_notify"): "1", k("ipv4", "eth0", "arp_announce"): "2", k("ipv4", "eth0", "rp_filter"): "0"} {
		var cur string
		_ = netns.Do(cont.Path, func() (err error) { cur, err = sysctl.Get(key); return })
		if cur != v {
			t.Errorf("%s = %q; want %q", key, cur, v)
		}
	}
}
