package macvlan_test

import (
	"bytes"
	"crypto/sha512"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/knit-cni/knit/internal/kfeature"
	"github.com/knit-cni/knit/internal/netns"
	"github.com/knit-cni/knit/internal/nstest"
	"github.com/knit-cni/knit/internal/probe"
	"github.com/knit-cni/knit/pkg/cni"
	"github.com/knit-cni/knit/plugins/main/internal/linklab"
	"github.com/vishvananda/netlink"
)

func TestMain(m *testing.M) { nstest.Main(m) }

func newLab(t *testing.T) *linklab.Lab {
	t.Helper()
	kfeature.Require(t, kfeature.Macvlan)
	return linklab.New(t, "macvlan")
}

func hostLocal(subnet string) map[string]any {
	return map[string]any{"type": "host-local", "subnet": subnet}
}

// macvlanIn returns the macvlan called name in the namespace.
func macvlanIn(t *testing.T, nsPath, name string) *netlink.Macvlan {
	t.Helper()
	l := nstest.Link(t, nsPath, name)
	mv, ok := l.(*netlink.Macvlan)
	if !ok {
		t.Fatalf("%s in %s is a %s, not a macvlan", name, nsPath, l.Type())
	}
	return mv
}

func firstIP(t *testing.T, r *cni.Result) net.IP {
	t.Helper()
	if len(r.IPs) == 0 {
		t.Fatalf("result has no IPs: %+v", r)
	}
	return r.IPs[0].Address.IP
}

func reach(t *testing.T, from string, to net.IP) {
	t.Helper()
	if _, err := probe.Ping(from, to, 3*time.Second); err != nil {
		t.Fatalf("ping %s from %s: %v", to, from, err)
	}
}

func sysctlIn(t *testing.T, nsPath, key string) string {
	t.Helper()
	var out []byte
	err := netns.Do(nsPath, func() error {
		var err error
		out, err = os.ReadFile(filepath.Join("/proc/sys", key))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// The talk's config with master eth0 and host-local 10.1.2.0/24, at 1.1.0
// and 0.4.0: the result names one container interface with its MAC, the
// IP on interface 0; the link is a bridge-mode macvlan of eth0; CHECK
// passes; DEL removes link and reservation and can be repeated, also once
// the namespace is gone.
func TestMacvlanTalkConfig(t *testing.T) {
	for _, version := range []string{"1.1.0", "0.4.0"} {
		t.Run(version, func(t *testing.T) {
			l := newLab(t)
			eth0 := l.Uplink("eth0", 0)
			ctr := l.Container()
			conf := l.Conf("mynet", map[string]any{"cniVersion": version, "master": "eth0", "ipam": hostLocal("10.1.2.0/24")})
			c := linklab.Call{ID: "ctr1", Netns: ctr}
			r := l.Add(c, conf)

			if len(r.Interfaces) != 1 || r.Interfaces[0].Name != "eth0" || r.Interfaces[0].Sandbox != ctr {
				t.Fatalf("interfaces %+v; want [eth0 in %s]", r.Interfaces, ctr)
			}
			mv := macvlanIn(t, ctr, "eth0")
			if r.Interfaces[0].Mac != mv.HardwareAddr.String() || r.Interfaces[0].Mac == eth0.Attrs().HardwareAddr.String() {
				t.Errorf("result MAC %s, link MAC %s, master MAC %s", r.Interfaces[0].Mac, mv.HardwareAddr, eth0.Attrs().HardwareAddr)
			}
			if mv.Mode != netlink.MACVLAN_MODE_BRIDGE {
				t.Errorf("mode %d; want bridge", mv.Mode)
			}
			if mv.ParentIndex != eth0.Attrs().Index {
				t.Errorf("parent ifindex %d; want eth0's %d", mv.ParentIndex, eth0.Attrs().Index)
			}
			if mv.Flags&net.FlagUp == 0 {
				t.Error("eth0 is not up in the container")
			}
			if len(r.IPs) != 1 || r.IPs[0].Interface == nil || *r.IPs[0].Interface != 0 {
				t.Fatalf("ips %+v; want one on interface 0", r.IPs)
			}
			_, subnet, _ := net.ParseCIDR("10.1.2.0/24")
			if ip := firstIP(t, r); !subnet.Contains(ip) || !slices.Contains(nstest.Addrs(t, ctr, "eth0"), r.IPs[0].Address.String()) {
				t.Errorf("address %s not from the subnet or not on eth0 (%v)", ip, nstest.Addrs(t, ctr, "eth0"))
			}
			if got := sysctlIn(t, ctr, "net/ipv4/conf/eth0/arp_notify"); got != "1" {
				t.Errorf("arp_notify = %s; want 1", got)
			}
			if hl := linklab.Links(t, l.Host); len(hl) != 2 || !slices.Contains(hl, "eth0") {
				t.Errorf("host links %v; want lo and eth0 only", hl)
			}

			withPrev := linklab.WithPrev(t, conf, r)
			c.Cmd = "CHECK"
			l.OK(c, withPrev)
			c.Cmd = "DEL"
			l.OK(c, withPrev)
			if nstest.LinkExists(t, ctr, "eth0") {
				t.Error("eth0 still in the container after DEL")
			}
			if got := l.Reservations("mynet"); len(got) != 0 {
				t.Errorf("host-local still holds %v", got)
			}
			l.OK(c, conf)
			c.Netns = "/run/netns/knit-no-such-namespace"
			l.OK(c, conf)
			c.Netns = ""
			l.OK(c, conf)
		})
	}
}

// Two containers on bridge-mode macvlans of one master reach each other
// (ICMP and TCP); with mode private they cannot, which shows the mode the
// kernel got is the one configured.
func TestMacvlanContainersReachEachOther(t *testing.T) {
	for _, mode := range []string{"bridge", "private"} {
		t.Run(mode, func(t *testing.T) {
			l := newLab(t)
			l.Uplink("eth0", 0)
			conf := l.Conf("mv", map[string]any{"master": "eth0", "mode": mode, "ipam": hostLocal("10.1.4.0/24")})
			c1, c2 := l.Container(), l.Container()
			r1 := l.Add(linklab.Call{ID: "c1", Netns: c1}, conf)
			r2 := l.Add(linklab.Call{ID: "c2", Netns: c2}, conf)
			if m := macvlanIn(t, c1, "eth0").Mode; ModeName(m) != mode {
				t.Fatalf("mode %s; want %s", ModeName(m), mode)
			}
			a1, a2 := firstIP(t, r1), firstIP(t, r2)
			if mode == "private" {
				if _, err := probe.Ping(c1, a2, 500*time.Millisecond); err == nil {
					t.Fatal("private macvlans reached each other")
				}
				return
			}
			reach(t, c1, a2)
			reach(t, c2, a1)
			srv, err := probe.ListenTCP(c2, net.JoinHostPort(a2.String(), "7777"))
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			seen, _, err := probe.TCPRoundTrip(c1, srv.Addr, 3*time.Second)
			if err != nil || seen != a1.String() {
				t.Fatalf("TCP round trip: seen from %q, %v; want %s", seen, err, a1)
			}
		})
	}
}

// ModeName is the macvlan package's, for messages.
func ModeName(m netlink.MacvlanMode) string {
	return map[netlink.MacvlanMode]string{netlink.MACVLAN_MODE_BRIDGE: "bridge", netlink.MACVLAN_MODE_PRIVATE: "private",
		netlink.MACVLAN_MODE_VEPA: "vepa", netlink.MACVLAN_MODE_PASSTHRU: "passthru"}[m]
}

// No master: the interface of the host's default route is used; with no
// default route ADD fails with code 7 and creates nothing.
func TestMacvlanDefaultRouteMaster(t *testing.T) {
	l := newLab(t)
	l.Uplink("eth0", 0)
	up := l.Uplink("uplink1", 0)
	ctr := l.Container()
	conf := l.Conf("mv", map[string]any{"ipam": hostLocal("10.1.5.0/24")})
	c := linklab.Call{ID: "c1", Netns: ctr}

	e := l.Fails(linklab.Call{Cmd: "ADD", ID: "c1", Netns: ctr}, conf)
	if e.Code != cni.ErrInvalidNetworkConfig || !strings.Contains(e.Error(), "default route") {
		t.Fatalf("ADD without master or default route: %v; want code 7 naming the default route", e)
	}
	if got := linklab.Links(t, ctr); len(got) != 1 {
		t.Fatalf("container links %v after a failed ADD; want only lo", got)
	}

	h := nstest.Handle(t, l.Host)
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(192, 0, 2, 10), Mask: net.CIDRMask(24, 32)}}
	if err := h.AddrAdd(up, addr); err != nil {
		t.Fatal(err)
	}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: up.Attrs().Index, Gw: net.IPv4(192, 0, 2, 1)}); err != nil {
		t.Fatal(err)
	}
	l.Add(c, conf)
	if p := macvlanIn(t, ctr, "eth0").ParentIndex; p != up.Attrs().Index {
		t.Fatalf("parent ifindex %d; want the default route's uplink1 (%d)", p, up.Attrs().Index)
	}
}

// linkInContainer: the master is found in (and the macvlan made from) the
// container's own namespace.
func TestMacvlanLinkInContainer(t *testing.T) {
	l := newLab(t)
	l.Uplink("eth0", 0) // a host link of the same name must not be used
	ctr := l.Container()
	inner := l.UplinkIn(ctr, "m0", 0)
	conf := l.Conf("mv", map[string]any{"master": "m0", "linkInContainer": true, "ipam": hostLocal("10.1.6.0/24")})
	c := linklab.Call{ID: "c1", Netns: ctr, IfName: "net1"}
	r := l.Add(c, conf)
	mv := macvlanIn(t, ctr, "net1")
	if mv.ParentIndex != inner.Attrs().Index || mv.NetNsID >= 0 {
		t.Fatalf("parent ifindex %d (netns id %d); want m0's %d in the container itself", mv.ParentIndex, mv.NetNsID, inner.Attrs().Index)
	}
	c.Cmd = "CHECK"
	l.OK(c, linklab.WithPrev(t, conf, r))
	c.Cmd = "DEL"
	l.OK(c, conf)
	if !nstest.LinkExists(t, ctr, "m0") || nstest.LinkExists(t, ctr, "net1") {
		t.Fatalf("after DEL container has %v; want m0 kept and net1 gone", linklab.Links(t, ctr))
	}

	// Without linkInContainer the same master is looked for in the host.
	conf = l.Conf("mv", map[string]any{"master": "m0", "ipam": hostLocal("10.1.6.0/24")})
	e := l.Fails(linklab.Call{Cmd: "ADD", ID: "c1", Netns: ctr}, conf)
	if e.Code != cni.ErrInvalidNetworkConfig || !strings.Contains(e.Details, "linkInContainer") {
		t.Fatalf("master only in the container: %v; want code 7 hinting at linkInContainer", e)
	}
}

// MAC from mac, CNI_ARGS MAC= and runtimeConfig.mac (last one wins); mtu and
// bcqueuelen reach the kernel; without ipam the link is only set up.
func TestMacvlanMACMTUAndQueue(t *testing.T) {
	l := newLab(t)
	l.Uplink("eth0", 1500)
	cases := []struct {
		name, args string
		keys       map[string]any
		want       string
	}{
		{"config", "", map[string]any{"mac": "0a:58:0a:01:01:01"}, "0a:58:0a:01:01:01"},
		{"cni-args", "IgnoreUnknown=1;K8S_POD_NAME=x;MAC=0a:58:0a:01:01:02", map[string]any{"mac": "0a:58:0a:01:01:01"}, "0a:58:0a:01:01:02"},
		{"capability", "MAC=0a:58:0a:01:01:02", map[string]any{"mac": "0a:58:0a:01:01:01", "runtimeConfig": map[string]any{"mac": "0a:58:0a:01:01:03"}}, "0a:58:0a:01:01:03"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			keys := map[string]any{"master": "eth0", "mtu": 1400, "bcqueuelen": 333}
			for k, v := range tc.keys {
				keys[k] = v
			}
			ctr := l.Container()
			r := l.Add(linklab.Call{ID: "c-" + tc.name, Netns: ctr, Args: tc.args}, l.Conf("mv", keys))
			mv := macvlanIn(t, ctr, "eth0")
			if mv.HardwareAddr.String() != tc.want || r.Interfaces[0].Mac != tc.want {
				t.Errorf("MAC %s (result %s); want %s", mv.HardwareAddr, r.Interfaces[0].Mac, tc.want)
			}
			if mv.MTU != 1400 {
				t.Errorf("MTU %d; want 1400", mv.MTU)
			}
			if mv.BCQueueLen != 333 {
				t.Errorf("bcqueuelen %d; want 333", mv.BCQueueLen)
			}
			if mv.Flags&net.FlagUp == 0 || len(r.IPs) != 0 || len(nstest.Addrs(t, ctr, "eth0")) > 1 {
				t.Errorf("L2-only attachment: up=%v ips=%v addrs=%v", mv.Flags&net.FlagUp != 0, r.IPs, nstest.Addrs(t, ctr, "eth0"))
			}
		})
	}
}

// Bad input fails with a clear CNI error before anything changes: no link
// in the container and no IPAM reservation.
func TestMacvlanBadConfig(t *testing.T) {
	l := newLab(t)
	l.Uplink("eth0", 1500)
	ipam := hostLocal("10.1.7.0/24")
	cases := []struct {
		name, args string
		keys       map[string]any
		code       uint
		want       string
	}{
		{"mode", "", map[string]any{"master": "eth0", "mode": "l2"}, cni.ErrInvalidNetworkConfig, "unknown macvlan mode"},
		{"mtu-above-master", "", map[string]any{"master": "eth0", "mtu": 9000}, cni.ErrInvalidNetworkConfig, "master MTU(1500)"},
		{"negative-mtu", "", map[string]any{"master": "eth0", "mtu": -1}, cni.ErrInvalidNetworkConfig, "invalid MTU"},
		{"missing-master", "", map[string]any{"master": "eth9"}, cni.ErrInvalidNetworkConfig, `"eth9" not found`},
		{"bad-mac", "", map[string]any{"master": "eth0", "mac": "zz:00"}, cni.ErrInvalidNetworkConfig, "invalid MAC"},
		{"multicast-mac", "", map[string]any{"master": "eth0", "runtimeConfig": map[string]any{"mac": "01:00:5e:00:00:01"}}, cni.ErrInvalidNetworkConfig, "multicast"},
		{"unknown-arg", "FOO=1", map[string]any{"master": "eth0"}, cni.ErrInvalidEnvironmentVariables, "unknown args"},
		{"bcqueuelen", "", map[string]any{"master": "eth0", "bcqueuelen": -5}, cni.ErrInvalidNetworkConfig, "bcqueuelen"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctr := l.Container()
			tc.keys["ipam"] = ipam
			conf := l.Conf("bad", tc.keys)
			e := l.Fails(linklab.Call{Cmd: "ADD", ID: "c1", Netns: ctr, Args: tc.args}, conf)
			if e.Code != tc.code || !strings.Contains(e.Error(), tc.want) {
				t.Errorf("error %v (code %d); want code %d mentioning %q", e, e.Code, tc.code, tc.want)
			}
			if got := linklab.Links(t, ctr); len(got) != 1 {
				t.Errorf("container links %v; want only lo", got)
			}
			if got := l.Reservations("bad"); len(got) != 0 {
				t.Errorf("reservations %v after failed ADD", got)
			}
			// The runtime's DEL after the failed ADD succeeds.
			l.OK(linklab.Call{Cmd: "DEL", ID: "c1", Netns: ctr, Args: tc.args}, conf)
		})
	}
}

// A container that already has the interface name: code 4, its link is
// untouched and no address stays reserved.
func TestMacvlanNameClash(t *testing.T) {
	l := newLab(t)
	l.Uplink("eth0", 0)
	ctr := l.Container()
	conf := l.Conf("mv", map[string]any{"master": "eth0", "ipam": hostLocal("10.1.8.0/24")})
	l.Add(linklab.Call{ID: "c1", Netns: ctr}, conf)
	before := macvlanIn(t, ctr, "eth0").Index
	e := l.Fails(linklab.Call{Cmd: "ADD", ID: "c2", Netns: ctr}, conf)
	if e.Code != cni.ErrInvalidEnvironmentVariables || !strings.Contains(e.Error(), "already exists") {
		t.Fatalf("clash: %v; want code 4 'already exists'", e)
	}
	if macvlanIn(t, ctr, "eth0").Index != before || len(linklab.Links(t, ctr)) != 2 {
		t.Fatalf("container links changed: %v", linklab.Links(t, ctr))
	}
	if got := l.Reservations("mv"); len(got) != 1 {
		t.Fatalf("reservations %v; want only c1's", got)
	}
}

// CHECK notices a removed address, a changed MAC, a missing interface and a
// prevResult for another namespace.
func TestMacvlanCheckDetectsDamage(t *testing.T) {
	l := newLab(t)
	l.Uplink("eth0", 0)
	ctr := l.Container()
	conf := l.Conf("mv", map[string]any{"master": "eth0", "mode": "vepa", "ipam": hostLocal("10.1.9.0/24")})
	c := linklab.Call{ID: "c1", Netns: ctr}
	r := l.Add(c, conf)
	prev := linklab.WithPrev(t, conf, r)
	c.Cmd = "CHECK"
	l.OK(c, prev)

	// The config's mode differs from the link's.
	if e := l.Fails(c, linklab.WithPrev(t, l.Conf("mv", map[string]any{"master": "eth0", "mode": "bridge", "ipam": hostLocal("10.1.9.0/24")}), r)); !strings.Contains(e.Msg, "mode vepa") {
		t.Errorf("mode mismatch: %v", e)
	}
	if e := l.Fails(c, conf); !strings.Contains(e.Msg, "prevResult") {
		t.Errorf("no prevResult: %v", e)
	}
	other := l.Container()
	if e := l.Fails(linklab.Call{Cmd: "CHECK", ID: "c1", Netns: other}, prev); !strings.Contains(e.Msg, "sandbox") {
		t.Errorf("other namespace: %v", e)
	}

	h := nstest.Handle(t, ctr)
	lk, _ := h.LinkByName("eth0")
	mac, _ := net.ParseMAC("0a:58:00:00:00:99")
	if err := h.LinkSetHardwareAddr(lk, mac); err != nil {
		t.Fatal(err)
	}
	if e := l.Fails(c, prev); !strings.Contains(e.Msg, "wrong MAC") {
		t.Errorf("changed MAC: %v", e)
	}
	if err := h.AddrDel(lk, &netlink.Addr{IPNet: &r.IPs[0].Address}); err != nil {
		t.Fatal(err)
	}
	r.Interfaces[0].Mac = mac.String()
	if e := l.Fails(c, linklab.WithPrev(t, conf, r)); !strings.Contains(e.Msg, "address") {
		t.Errorf("removed address: %v", e)
	}
	if err := h.LinkDel(lk); err != nil {
		t.Fatal(err)
	}
	if e := l.Fails(c, prev); !strings.Contains(e.Msg, "not found") {
		t.Errorf("removed link: %v", e)
	}
}

// STATUS and GC are forwarded to the IPAM plugin: GC releases the
// reservation of an attachment not in cni.dev/valid-attachments.
func TestMacvlanStatusAndGC(t *testing.T) {
	l := newLab(t)
	l.Uplink("eth0", 0)
	keys := map[string]any{"master": "eth0", "ipam": hostLocal("10.1.10.0/24")}
	c1, c2 := l.Container(), l.Container()
	l.Add(linklab.Call{ID: "keep", Netns: c1}, l.Conf("gc", keys))
	l.Add(linklab.Call{ID: "stale", Netns: c2}, l.Conf("gc", keys))
	l.OK(linklab.Call{Cmd: "STATUS"}, l.Conf("gc", keys))
	keys["cni.dev/valid-attachments"] = []map[string]string{{"containerID": "keep", "ifname": "eth0"}}
	l.OK(linklab.Call{Cmd: "GC"}, l.Conf("gc", keys))
	if got := l.Reservations("gc"); len(got) != 1 {
		t.Fatalf("reservations after GC %v; want only keep's", got)
	}
}

// The talk's point: a macvlan container cannot reach its host through the
// master, but with ptp as a second interface it can.
func TestMacvlanWithPtpReachesHost(t *testing.T) {
	l := newLab(t)
	if _, err := os.Stat(filepath.Join(l.Plugins, "ptp")); err != nil {
		t.Skip("knit-plugin has no ptp plugin")
	}
	eth0 := l.Uplink("eth0", 0)
	h := nstest.Handle(t, l.Host)
	if err := h.AddrAdd(eth0, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(10, 1, 2, 254), Mask: net.CIDRMask(24, 32)}}); err != nil {
		t.Fatal(err)
	}
	ctr := l.Container()
	l.Add(linklab.Call{ID: "c1", Netns: ctr}, l.Conf("mynet", map[string]any{"master": "eth0", "ipam": hostLocal("10.1.2.0/24")}))
	if _, err := probe.Ping(ctr, net.IPv4(10, 1, 2, 254), 500*time.Millisecond); err == nil {
		t.Fatal("the macvlan container reached the master's own address; macvlan should isolate it")
	}
	ptpConf := l.Conf("ptpnet", map[string]any{"type": "ptp", "ipam": hostLocal("10.1.3.0/24")})
	pr := l.Add(linklab.Call{ID: "c1", Netns: ctr, IfName: "eth1", Type: "ptp"}, ptpConf)
	var gw net.IP
	for _, ip := range pr.IPs {
		if ip.Gateway != nil {
			gw = ip.Gateway
		}
	}
	if gw == nil {
		t.Fatalf("ptp result has no gateway: %+v", pr.IPs)
	}
	reach(t, ctr, gw)
}

// cnitool returns the reference cnitool: the prebuilt one in /tmp/refbin
// when there is one, else built from the module's test dependency.
func cnitool(t *testing.T) string {
	t.Helper()
	if p := "/tmp/refbin/cnitool"; fileExists(p) {
		return p
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("the reference cnitool is not prebuilt and there is no go toolchain to build it (kernel VM)")
	}
	bin := filepath.Join(t.TempDir(), "cnitool")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/containernetworking/cni/cnitool").CombinedOutput()
	if err != nil {
		t.Fatalf("building the reference cnitool: %v\n%s", err, out)
	}
	return bin
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// The reference cnitool drives knit's macvlan (with knit's host-local) in
// the lab's host namespace: ADD, CHECK (from its result cache), DEL.
func TestMacvlanCnitool(t *testing.T) {
	l := newLab(t)
	tool := cnitool(t)
	eth0 := l.Uplink("eth0", 0)
	ctr := l.Container()
	confDir := t.TempDir()
	name := nstest.UniqueName("mv")
	conf := l.Conf(name, map[string]any{"master": "eth0", "ipam": hostLocal("10.1.11.0/24")})
	if err := os.WriteFile(filepath.Join(confDir, "10-mv.conf"), conf, 0o644); err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("cnitool-%x", sha512.Sum512([]byte(ctr)))[:len("cnitool-")+20]
	cache := filepath.Join("/var/lib/cni/results", name+"-"+id+"-eth0")
	t.Cleanup(func() { os.Remove(cache) })

	run := func(verb string) string {
		t.Helper()
		cmd := exec.Command(tool, verb, name, ctr)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "NETCONFPATH=" + confDir, "CNI_PATH=" + l.Plugins, "CNI_IFNAME=eth0"}
		out, err := runIn(l.Host, cmd)
		if err != nil {
			t.Fatalf("cnitool %s: %v\n%s", verb, err, out)
		}
		return string(out)
	}
	out := run("add")
	r, err := cni.ParseResult([]byte(out), "1.1.0")
	if err != nil || len(r.Interfaces) != 1 || r.Interfaces[0].Sandbox != ctr || len(r.IPs) != 1 {
		t.Fatalf("cnitool add printed %v: %s", err, out)
	}
	if mv := macvlanIn(t, ctr, "eth0"); mv.ParentIndex != eth0.Attrs().Index || mv.HardwareAddr.String() != r.Interfaces[0].Mac {
		t.Fatalf("macvlan parent %d MAC %s; want %d %s", mv.ParentIndex, mv.HardwareAddr, eth0.Attrs().Index, r.Interfaces[0].Mac)
	}
	if !fileExists(cache) {
		t.Fatalf("cnitool cached no result at %s", cache)
	}
	run("check")
	// CHECK must fail once the address is gone (cnitool reports it).
	h := nstest.Handle(t, ctr)
	lk, _ := h.LinkByName("eth0")
	if err := h.AddrDel(lk, &netlink.Addr{IPNet: &r.IPs[0].Address}); err != nil {
		t.Fatal(err)
	}
	bad := exec.Command(tool, "check", name, ctr)
	bad.Env = []string{"PATH=" + os.Getenv("PATH"), "NETCONFPATH=" + confDir, "CNI_PATH=" + l.Plugins, "CNI_IFNAME=eth0"}
	if out, err := runIn(l.Host, bad); err == nil {
		t.Fatalf("cnitool check passed with the address removed:\n%s", out)
	}
	run("del")
	if nstest.LinkExists(t, ctr, "eth0") || fileExists(cache) {
		t.Fatal("cnitool del left the link or the cached result")
	}
	if got := l.Reservations(name); len(got) != 0 {
		t.Fatalf("host-local still holds %v", got)
	}
}

func runIn(nsPath string, cmd *exec.Cmd) ([]byte, error) {
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := netns.Do(nsPath, cmd.Run)
	return out.Bytes(), err
}

// Debian's reference macvlan (with its host-local) and knit's, given the
// same config at 1.0.0, print the same result apart from the random MAC,
// and make the same kind of link. ADD+DEL rounds of each are timed.
func TestMacvlanMatchesReference(t *testing.T) {
	const refDir = "/usr/lib/cni"
	if !fileExists(filepath.Join(refDir, "macvlan")) || !fileExists(filepath.Join(refDir, "host-local")) {
		t.Skip("Debian's containernetworking-plugins are not installed in " + refDir)
	}
	l := newLab(t)
	l.Uplink("eth0", 0)
	refData := t.TempDir()
	keys := func(dataDir string) map[string]any {
		return map[string]any{"cniVersion": "1.0.0", "master": "eth0", "mode": "private", "mtu": 1400,
			"ipam": map[string]any{"type": "host-local", "subnet": "10.1.40.0/24", "dataDir": dataDir,
				"routes": []map[string]any{{"dst": "0.0.0.0/0"}}}}
	}
	knitConf, refConf := l.Conf("cmp", keys(l.DataDir)), l.Conf("cmp", keys(refData))
	run := func(dir, cmd, id, ctr string, conf []byte) nstest.PluginRun {
		env := map[string]string{"CNI_CONTAINERID": id, "CNI_NETNS": ctr, "CNI_IFNAME": "eth0", "CNI_PATH": dir}
		r := nstest.Exec(t, l.Host, dir, "macvlan", cmd, env, conf)
		if r.ExitCode != 0 {
			t.Fatalf("%s/macvlan %s: exit %d: %s", dir, cmd, r.ExitCode, r.Stdout)
		}
		return r
	}
	normalise := func(ctr string, out []byte) string {
		r, err := cni.ParseResult(out, "1.0.0")
		if err != nil {
			t.Fatalf("unparsable result %v: %s", err, out)
		}
		for _, ifc := range r.Interfaces {
			ifc.Mac, ifc.Sandbox = "<mac>", strings.Replace(ifc.Sandbox, ctr, "<ctr>", 1)
		}
		enc, _ := r.Encode("1.0.0")
		return string(enc)
	}
	ck, cr := l.Container(), l.Container()
	got := normalise(ck, run(l.Plugins, "ADD", "c1", ck, knitConf).Stdout)
	want := normalise(cr, run(refDir, "ADD", "c1", cr, refConf).Stdout)
	if got != want {
		t.Fatalf("results differ\nknit:      %s\nreference: %s", got, want)
	}
	km, rm := macvlanIn(t, ck, "eth0"), macvlanIn(t, cr, "eth0")
	if km.Mode != rm.Mode || km.MTU != rm.MTU || km.ParentIndex != rm.ParentIndex {
		t.Fatalf("links differ: knit mode %d mtu %d parent %d, reference mode %d mtu %d parent %d",
			km.Mode, km.MTU, km.ParentIndex, rm.Mode, rm.MTU, rm.ParentIndex)
	}
	run(l.Plugins, "DEL", "c1", ck, knitConf)
	run(refDir, "DEL", "c1", cr, refConf)

	const rounds = 10
	for _, side := range []struct {
		name, dir string
		conf      []byte
		ctr       string
	}{{"knit", l.Plugins, knitConf, ck}, {"reference", refDir, refConf, cr}} {
		start := time.Now()
		for range rounds {
			run(side.dir, "ADD", "c1", side.ctr, side.conf)
			run(side.dir, "DEL", "c1", side.ctr, side.conf)
		}
		t.Logf("%s: ADD+DEL %s per round (mean of %d, host-local included)", side.name, time.Since(start)/rounds, rounds)
	}
}
