package hostdevice_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/knit-cni/knit/internal/nstest"
	"github.com/knit-cni/knit/internal/probe"
	"github.com/knit-cni/knit/pkg/cni"
	"github.com/vishvananda/netlink"
)

var hostAddrs = []string{"10.99.0.1/24", "2001:db8:99::1/64"}

func hostLocal(subnet, start string) map[string]any {
	return map[string]any{"type": "host-local", "ranges": [][]map[string]any{{{"subnet": subnet, "rangeStart": start}}}}
}

// assertRestored checks the device is back in the host as it was.
func assertRestored(t *testing.T, l *lab, dev device, mtu int, alias string, addrs []string) {
	t.Helper()
	if nstest.LinkExists(t, l.cont, l.ifname) {
		t.Errorf("%s is still in the container", l.ifname)
	}
	if !nstest.LinkExists(t, l.host, dev.name) {
		t.Fatalf("device %s is not back in the host under its name (host has MAC %s as %v)", dev.name, dev.mac, linkByMAC(t, l.host, dev.mac))
	}
	hl := nstest.Link(t, l.host, dev.name)
	if hl.Attrs().HardwareAddr.String() != dev.mac {
		t.Errorf("%s has MAC %s, want %s", dev.name, hl.Attrs().HardwareAddr, dev.mac)
	}
	if hl.Attrs().MTU != mtu {
		t.Errorf("%s MTU %d, want %d", dev.name, hl.Attrs().MTU, mtu)
	}
	if hl.Attrs().Alias != alias {
		t.Errorf("%s alias %q, want %q", dev.name, hl.Attrs().Alias, alias)
	}
	if !nstest.LinkUp(t, l.host, dev.name) {
		t.Errorf("%s is not up again", dev.name)
	}
	var got []string
	for _, a := range nstest.Addrs(t, l.host, dev.name) {
		if !strings.HasPrefix(a, "fe80:") {
			got = append(got, a)
		}
	}
	if !slices.Equal(got, addrs) {
		t.Errorf("%s addresses %v, want %v", dev.name, got, addrs)
	}
}

func stateFiles(t *testing.T, l *lab) []string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(l.stateDir, l.network, "*"))
	return m
}

// TestHostDeviceMoveAndReturn: ADD moves the device in under CNI_IFNAME
// with IPAM addresses and working traffic; DEL returns it to the host with
// its original name, MTU, alias, addresses and up state; DEL repeats.
func TestHostDeviceMoveAndReturn(t *testing.T) {
	l := newLab(t)
	dev := l.newDevice("hd0", 1400, "uplink", hostAddrs, "10.99.0.2/24")
	conf := l.conf(map[string]any{"device": "hd0", "ipam": hostLocal("10.99.0.0/24", "10.99.0.10")})

	res := l.add("c1", conf)
	if len(res.Interfaces) != 1 || res.Interfaces[0].Name != "net1" || res.Interfaces[0].Sandbox != l.cont || res.Interfaces[0].Mac != dev.mac {
		t.Fatalf("result interfaces %+v, want net1 in %s with MAC %s", res.Interfaces[0], l.cont, dev.mac)
	}
	if len(res.IPs) != 1 || res.IPs[0].Address.String() != "10.99.0.10/24" || *res.IPs[0].Interface != 0 {
		t.Fatalf("result IPs %+v", res.IPs)
	}
	if nstest.LinkExists(t, l.host, "hd0") {
		t.Fatal("hd0 is still in the host after ADD")
	}
	cl := nstest.Link(t, l.cont, "net1")
	if cl.Attrs().Alias != "hd0" || cl.Attrs().HardwareAddr.String() != dev.mac || cl.Attrs().MTU != 1400 {
		t.Errorf("container link: alias %q MAC %s MTU %d", cl.Attrs().Alias, cl.Attrs().HardwareAddr, cl.Attrs().MTU)
	}
	if got := nstest.Addrs(t, l.cont, "net1"); !slices.Contains(got, "10.99.0.10/24") || slices.Contains(got, "10.99.0.1/24") {
		t.Errorf("container addresses %v: want the IPAM address and none of the host's", got)
	}
	if _, err := probe.Ping(l.cont, mustIP("10.99.0.2"), 3*time.Second); err != nil {
		t.Fatalf("no traffic through the moved device: %v", err)
	}
	if len(stateFiles(t, l)) != 1 {
		t.Errorf("state files after ADD: %v", stateFiles(t, l))
	}
	l.ok("CHECK", "c1", withPrev(t, conf, res))

	l.ok("DEL", "c1", withPrev(t, conf, res))
	assertRestored(t, l, dev, 1400, "uplink", hostAddrs)
	if _, err := probe.Ping(l.host, mustIP("10.99.0.2"), 3*time.Second); err != nil {
		t.Errorf("host cannot use the returned device: %v", err)
	}
	if f := stateFiles(t, l); len(f) != 0 {
		t.Errorf("state left after DEL: %v", f)
	}
	l.ok("DEL", "c1", conf)
	assertRestored(t, l, dev, 1400, "uplink", hostAddrs)

	// Attach again: the device is reusable after DEL.
	l.add("c2", conf)
	l.ok("DEL", "c2", conf)
	assertRestored(t, l, dev, 1400, "uplink", hostAddrs)
}

// TestHostDeviceByMAC selects the device by hwaddr, without IPAM: the
// link is just moved and set up.
func TestHostDeviceByMAC(t *testing.T) {
	l := newLab(t)
	dev := l.newDevice("hdmac", 1500, "", nil, "")
	conf := l.conf(map[string]any{"hwaddr": strings.ToUpper(dev.mac)})
	res := l.add("c1", conf)
	if len(res.IPs) != 0 || res.Interfaces[0].Mac != dev.mac {
		t.Fatalf("result %+v", res)
	}
	if !nstest.LinkUp(t, l.cont, "net1") {
		t.Error("net1 is not up")
	}
	l.ok("CHECK", "c1", withPrev(t, conf, res))
	l.ok("DEL", "c1", conf)
	assertRestored(t, l, dev, 1500, "", nil)
}

// TestHostDeviceCheckDetectsDamage: CHECK fails when the device lost its
// address or its alias.
func TestHostDeviceCheckDetectsDamage(t *testing.T) {
	l := newLab(t)
	l.newDevice("hdchk", 1500, "", nil, "")
	conf := l.conf(map[string]any{"device": "hdchk", "ipam": hostLocal("10.98.0.0/24", "10.98.0.5")})
	res := l.add("c1", conf)
	h := nstest.Handle(t, l.cont)
	cl := nstest.Link(t, l.cont, "net1")
	addr, _ := netlink.ParseAddr("10.98.0.5/24")
	must(t, h.AddrDel(cl, addr))
	if e := l.fails("CHECK", "c1", withPrev(t, conf, res)); !strings.Contains(e.Details, "10.98.0.5/24") {
		t.Errorf("CHECK error %+v does not name the missing address", e)
	}
	must(t, h.AddrAdd(cl, addr))
	l.ok("CHECK", "c1", withPrev(t, conf, res))
	must(t, h.LinkSetAlias(cl, "other"))
	if e := l.fails("CHECK", "c1", withPrev(t, conf, res)); !strings.Contains(e.Msg, "not the device") {
		t.Errorf("CHECK error %+v does not report the wrong device", e)
	}
	must(t, h.LinkSetAlias(cl, "hdchk"))
	l.ok("DEL", "c1", conf)
}

// TestHostDeviceBadInput: bad configs and a missing device fail with the
// right code and change nothing.
func TestHostDeviceBadInput(t *testing.T) {
	l := newLab(t)
	dev := l.newDevice("hdbad", 1500, "keep", []string{"10.97.0.1/24"}, "")
	cases := []struct {
		name string
		keys map[string]any
		code uint
		want string
	}{
		{"no selector", map[string]any{}, cni.ErrInvalidNetworkConfig, `specify either "device"`},
		{"missing device", map[string]any{"device": "nosuch0"}, cni.ErrInvalidNetworkConfig, "failed to find host device"},
		{"unknown MAC", map[string]any{"hwaddr": "02:00:00:00:00:99"}, cni.ErrInvalidNetworkConfig, "failed to find host device"},
		{"bad MAC", map[string]any{"hwaddr": "zz"}, cni.ErrInvalidNetworkConfig, "MAC"},
		{"relative kernelpath", map[string]any{"kernelpath": "devices/x"}, cni.ErrInvalidNetworkConfig, "/sys/devices/"},
		{"escaping kernelpath", map[string]any{"kernelpath": "/sys/devices/../../etc"}, cni.ErrInvalidNetworkConfig, "/sys/devices/"},
		{"bad pciBusID", map[string]any{"pciBusID": "../../x"}, cni.ErrInvalidNetworkConfig, "pciBusID"},
		{"absent PCI device", map[string]any{"pciBusID": "0000:ff:1f.7"}, cni.ErrInvalidNetworkConfig, "0000:ff:1f.7"},
		{"bad deviceID", map[string]any{"runtimeConfig": map[string]any{"deviceID": "/etc"}}, cni.ErrInvalidNetworkConfig, "deviceID"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := l.fails("ADD", "c1", l.conf(c.keys))
			if e.Code != c.code || !strings.Contains(e.Msg+e.Details, c.want) {
				t.Errorf("got %+v, want code %d mentioning %q", e, c.code, c.want)
			}
		})
	}
	// CNI_IFNAME taken in the container: refused before anything moves.
	h := nstest.Handle(t, l.cont)
	attrs := netlink.NewLinkAttrs()
	attrs.Name = "net1"
	must(t, h.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: "net1p"}))
	e := l.fails("ADD", "c1", l.conf(map[string]any{"device": "hdbad"}))
	if e.Code != cni.ErrInvalidEnvironmentVariables || !strings.Contains(e.Details, "net1") {
		t.Errorf("name clash: got %+v", e)
	}
	assertRestoredNoCont(t, l, dev)
	// A container interface host-device did not move in is not "returned".
	if e := l.fails("DEL", "c1", l.conf(map[string]any{"device": "hdbad"})); !strings.Contains(e.Details, "not moved in by host-device") {
		t.Errorf("DEL of a foreign interface: %+v", e)
	}
	if !nstest.LinkExists(t, l.cont, "net1") {
		t.Error("DEL moved a foreign interface")
	}
	if f := stateFiles(t, l); len(f) != 0 {
		t.Errorf("state left by failed ADDs: %v", f)
	}
}

func assertRestoredNoCont(t *testing.T, l *lab, dev device) {
	t.Helper()
	hl := nstest.Link(t, l.host, dev.name)
	if hl.Attrs().Alias != "keep" || !slices.Contains(nstest.Addrs(t, l.host, dev.name), "10.97.0.1/24") {
		t.Errorf("failed ADD changed %s: alias %q addrs %v", dev.name, hl.Attrs().Alias, nstest.Addrs(t, l.host, dev.name))
	}
}

// TestHostDeviceDelAfterDeviceReturned: the device is already back in the
// host under its container name (as a NIC is when its namespace dies); DEL
// restores its name, MTU and addresses from the record.
func TestHostDeviceDelAfterDeviceReturned(t *testing.T) {
	l := newLab(t)
	dev := l.newDevice("hdret", 1450, "", hostAddrs, "")
	conf := l.conf(map[string]any{"device": "hdret"})
	l.add("c1", conf)
	// Simulate the namespace's death for a physical NIC: it returns to the
	// host under its current name.
	ch := nstest.Handle(t, l.cont)
	cl := nstest.Link(t, l.cont, "net1")
	must(t, ch.LinkSetMTU(cl, 1300))
	hfd := nsFd(t, l.host)
	must(t, ch.LinkSetNsFd(cl, hfd))
	if !nstest.LinkExists(t, l.host, "net1") {
		t.Fatal("setup: net1 not in host")
	}
	l.ok("DEL", "c1", conf)
	assertRestored(t, l, dev, 1450, "", hostAddrs)
}

// TestHostDeviceGC: GC returns the devices of attachments that are no
// longer valid and keeps the valid ones.
func TestHostDeviceGC(t *testing.T) {
	l := newLab(t)
	stale := l.newDevice("hdgc1", 1500, "", []string{"10.96.0.1/24"}, "")
	l.newDevice("hdgc2", 1500, "", nil, "")
	l.add("stale", l.conf(map[string]any{"device": "hdgc1"}))
	l.ifname = "net2"
	l.add("live", l.conf(map[string]any{"device": "hdgc2"}))

	gc := l.conf(map[string]any{"device": "hdgc1", "cni.dev/valid-attachments": []map[string]string{{"containerID": "live", "ifname": "net2"}}})
	r := nstest.Exec(t, l.host, l.plugins, "host-device", "GC", nil, gc)
	if r.ExitCode != 0 {
		t.Fatalf("GC failed: %s", r.Stdout)
	}
	l.ifname = "net1"
	assertRestored(t, l, stale, 1500, "", []string{"10.96.0.1/24"})
	if !nstest.LinkExists(t, l.cont, "net2") || nstest.LinkExists(t, l.host, "hdgc2") {
		t.Error("GC touched the valid attachment")
	}
	if f := stateFiles(t, l); len(f) != 1 || !strings.Contains(f[0], "live_net2") {
		t.Errorf("state after GC: %v", f)
	}
	l.ifname = "net2"
	l.ok("DEL", "live", l.conf(map[string]any{"device": "hdgc2"}))
}

// TestHostDevicePCIDevice resolves a real PCI network device. The plugin
// runs in a test namespace, where the device is not, so ADD must fail
// naming the interface sysfs gave for the address, and move nothing.
func TestHostDevicePCIDevice(t *testing.T) {
	dirs, _ := filepath.Glob("/sys/bus/pci/devices/*/net/*")
	if len(dirs) == 0 {
		t.Skip("no PCI network device on this machine: pciBusID resolution is covered by the fake-sysfs unit tests")
	}
	l := newLab(t)
	parts := strings.Split(dirs[0], "/")
	addr, name := parts[5], parts[7]
	e := l.fails("ADD", "c1", l.conf(map[string]any{"pciBusID": addr}))
	if e.Code != cni.ErrInvalidNetworkConfig || !strings.Contains(e.Details, name) {
		t.Errorf("got %+v, want a not-found error naming %s", e, name)
	}
	if _, err := os.Stat(dirs[0]); err != nil {
		t.Errorf("%s vanished: %v", dirs[0], err)
	}
}
