package smoke

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/knit-cni/knit/internal/kfeature"
	"github.com/knit-cni/knit/internal/netns"
	"github.com/knit-cni/knit/internal/nstest"
	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
)

// Under TCG emulation everything is several times slower than natively.
const recvTimeout = 5 * time.Second

func attrs(name string) netlink.LinkAttrs {
	a := netlink.NewLinkAttrs()
	a.Name = name
	return a
}

func add(t *testing.T, h *netlink.Handle, l netlink.Link) netlink.Link {
	t.Helper()
	if err := h.LinkAdd(l); err != nil {
		t.Fatalf("creating %s link %s: %v", l.Type(), l.Attrs().Name, err)
	}
	got, err := h.LinkByName(l.Attrs().Name)
	if err != nil {
		t.Fatalf("looking up new link %s: %v", l.Attrs().Name, err)
	}
	return got
}

func up(t *testing.T, h *netlink.Handle, l netlink.Link) {
	t.Helper()
	if err := h.LinkSetUp(l); err != nil {
		t.Fatalf("setting %s up: %v", l.Attrs().Name, err)
	}
}

// moveTo moves link (in the namespace h talks to) into the namespace at
// nsPath and returns a handle there with the link looked up again.
func moveTo(t *testing.T, h *netlink.Handle, l netlink.Link, nsPath string) (*netlink.Handle, netlink.Link) {
	t.Helper()
	fd, err := vnetns.GetFromPath(nsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	if err := h.LinkSetNsFd(l, int(fd)); err != nil {
		t.Fatalf("moving %s to %s: %v", l.Attrs().Name, nsPath, err)
	}
	nh := nstest.Handle(t, nsPath)
	moved, err := nh.LinkByName(l.Attrs().Name)
	if err != nil {
		t.Fatalf("%s not found in %s after the move: %v", l.Attrs().Name, nsPath, err)
	}
	return nh, moved
}

// configure puts cidr on the link and brings it and lo up.
func configure(t *testing.T, h *netlink.Handle, l netlink.Link, cidr string) {
	t.Helper()
	addr, err := netlink.ParseAddr(cidr)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.AddrAdd(l, addr); err != nil {
		t.Fatalf("adding %s to %s: %v", cidr, l.Attrs().Name, err)
	}
	up(t, h, l)
	if lo, err := h.LinkByName("lo"); err == nil {
		up(t, h, lo)
	}
}

// listen opens a UDP socket on addr:port inside the namespace at nsPath.
func listen(t *testing.T, nsPath, addr string) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	err := netns.Do(nsPath, func() (err error) {
		c, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(addr), Port: 4242})
		return err
	})
	if err != nil {
		t.Fatalf("listening on %s:4242 in %s: %v", addr, nsPath, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// send sends payload from the namespace at nsPath to addr:4242 a few
// times (the first datagrams can be lost to neighbour resolution).
func send(t *testing.T, nsPath, addr string, payload []byte) {
	t.Helper()
	var c *net.UDPConn
	err := netns.Do(nsPath, func() (err error) {
		c, err = net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.ParseIP(addr), Port: 4242})
		return err
	})
	if err != nil {
		t.Fatalf("dialing %s:4242 from %s: %v", addr, nsPath, err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		for range 10 {
			if _, err := c.Write(payload); err != nil && !errors.Is(err, net.ErrClosed) {
				continue
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
}

// receives reports whether l gets payload within the timeout.
func receives(l *net.UDPConn, payload []byte, timeout time.Duration) (bool, error) {
	buf := make([]byte, 256)
	deadline := time.Now().Add(timeout)
	for {
		if err := l.SetReadDeadline(deadline); err != nil {
			return false, err
		}
		n, _, err := l.ReadFromUDP(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return false, nil
			}
			return false, err
		}
		if bytes.Equal(buf[:n], payload) {
			return true, nil
		}
	}
}

// mustReach checks UDP from src reaches dst's address dstIP.
func mustReach(t *testing.T, src, dst, dstIP string) {
	t.Helper()
	payload := fmt.Appendf(nil, "knit-smoke %s %d", t.Name(), time.Now().UnixNano())
	l := listen(t, dst, dstIP)
	send(t, src, dstIP, payload)
	ok, err := receives(l, payload, recvTimeout)
	if err != nil {
		t.Fatalf("receiving in %s: %v", dst, err)
	}
	if !ok {
		t.Fatalf("no UDP from %s reached %s:4242 in %s within %v", src, dstIP, dst, recvTimeout)
	}
}

func vethPair(t *testing.T, h *netlink.Handle, name, peer string) (netlink.Link, netlink.Link) {
	t.Helper()
	a := add(t, h, &netlink.Veth{LinkAttrs: attrs(name), PeerName: peer})
	b, err := h.LinkByName(peer)
	if err != nil {
		t.Fatal(err)
	}
	return a, b
}

// TestIPVlanL2Traffic: two ipvlan L2 slaves of one parent, each in its own
// namespace, exchange UDP — what the ipvlan plugin sets up per container.
func TestIPVlanL2Traffic(t *testing.T) {
	kfeature.Require(t, kfeature.IPVlan)
	host, a, b := nstest.New(t, "sih"), nstest.New(t, "sia"), nstest.New(t, "sib")
	h := nstest.Handle(t, host)
	par, peer := vethPair(t, h, "par0", "par1")
	up(t, h, par)
	up(t, h, peer)
	var slaves []netlink.Link
	for _, name := range []string{"ipv1", "ipv2"} {
		la := attrs(name)
		la.ParentIndex = par.Attrs().Index
		slaves = append(slaves, add(t, h, &netlink.IPVlan{LinkAttrs: la, Mode: netlink.IPVLAN_MODE_L2}))
	}
	ha, la := moveTo(t, h, slaves[0], a)
	hb, lb := moveTo(t, h, slaves[1], b)
	if got := la.(*netlink.IPVlan).Mode; got != netlink.IPVLAN_MODE_L2 {
		t.Errorf("ipvlan mode after the move: %v, want l2", got)
	}
	configure(t, ha, la, "10.231.0.1/24")
	configure(t, hb, lb, "10.231.0.2/24")
	mustReach(t, a, b, "10.231.0.2")
	mustReach(t, b, a, "10.231.0.1")
}

// TestVlan8021qTraffic: vlan 100 on both ends of a veth pair, each end in
// its own namespace, carries UDP — tagged frames, as the vlan plugin uses.
func TestVlan8021qTraffic(t *testing.T) {
	kfeature.Require(t, kfeature.Vlan)
	a, b := nstest.New(t, "sva"), nstest.New(t, "svb")
	ha := nstest.Handle(t, a)
	ea, eb := vethPair(t, ha, "trunk0", "trunk1")
	hb, eb := moveTo(t, ha, eb, b)
	up(t, ha, ea)
	up(t, hb, eb)
	var vl [2]netlink.Link
	for i, side := range []struct {
		h      *netlink.Handle
		parent netlink.Link
	}{{ha, ea}, {hb, eb}} {
		la := attrs("vl100")
		la.ParentIndex = side.parent.Attrs().Index
		vl[i] = add(t, side.h, &netlink.Vlan{LinkAttrs: la, VlanId: 100})
		if got := vl[i].(*netlink.Vlan).VlanId; got != 100 {
			t.Fatalf("vlan id reads back %d", got)
		}
	}
	configure(t, ha, vl[0], "10.232.0.1/24")
	configure(t, hb, vl[1], "10.232.0.2/24")
	mustReach(t, a, b, "10.232.0.2")
}

// TestDummyAddress: a dummy link with an address answers locally, as the
// dummy plugin's container interface does.
func TestDummyAddress(t *testing.T) {
	kfeature.Require(t, kfeature.Dummy)
	c := nstest.New(t, "sdc")
	h := nstest.Handle(t, c)
	d := add(t, h, &netlink.Dummy{LinkAttrs: attrs("dummy9")})
	configure(t, h, d, "10.233.0.1/32")
	if d.Type() != "dummy" {
		t.Errorf("link type %q, want dummy", d.Type())
	}
	mustReach(t, c, c, "10.233.0.1")
}

// TestVRFTable: a vrf with table 100 and an enslaved link puts the link's
// connected route in table 100, not main — what the vrf meta plugin needs.
func TestVRFTable(t *testing.T) {
	kfeature.Require(t, kfeature.VRF, kfeature.Dummy)
	c := nstest.New(t, "svc")
	h := nstest.Handle(t, c)
	vrf := add(t, h, &netlink.Vrf{LinkAttrs: attrs("vrf-blue"), Table: 100})
	if got := vrf.(*netlink.Vrf).Table; got != 100 {
		t.Fatalf("vrf table reads back %d", got)
	}
	up(t, h, vrf)
	d := add(t, h, &netlink.Dummy{LinkAttrs: attrs("eth9")})
	if err := h.LinkSetMaster(d, vrf); err != nil {
		t.Fatalf("enslaving eth9 to the vrf: %v", err)
	}
	configure(t, h, d, "10.234.0.1/24")
	_, dst, _ := net.ParseCIDR("10.234.0.0/24")
	find := func(table int) bool {
		rs, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: table}, netlink.RT_FILTER_TABLE)
		if err != nil {
			t.Fatalf("listing table %d: %v", table, err)
		}
		for _, r := range rs {
			if r.Dst != nil && r.Dst.String() == dst.String() {
				return true
			}
		}
		return false
	}
	if !find(100) {
		t.Error("connected route 10.234.0.0/24 is not in vrf table 100")
	}
	if find(254) {
		t.Error("connected route 10.234.0.0/24 leaked into the main table")
	}
}

// TestMacvlanBridgeTraffic: two bridge-mode macvlans of one parent, each in
// its own namespace, exchange UDP.
func TestMacvlanBridgeTraffic(t *testing.T) {
	kfeature.Require(t, kfeature.Macvlan)
	host, a, b := nstest.New(t, "smh"), nstest.New(t, "sma"), nstest.New(t, "smb")
	h := nstest.Handle(t, host)
	par, peer := vethPair(t, h, "par0", "par1")
	up(t, h, par)
	up(t, h, peer)
	var mv []netlink.Link
	for _, name := range []string{"mv1", "mv2"} {
		la := attrs(name)
		la.ParentIndex = par.Attrs().Index
		mv = append(mv, add(t, h, &netlink.Macvlan{LinkAttrs: la, Mode: netlink.MACVLAN_MODE_BRIDGE}))
	}
	ha, la := moveTo(t, h, mv[0], a)
	hb, lb := moveTo(t, h, mv[1], b)
	configure(t, ha, la, "10.235.0.1/24")
	configure(t, hb, lb, "10.235.0.2/24")
	mustReach(t, a, b, "10.235.0.2")
}

// TestBridgeVlanFiltering: on a bridge with vlan_filtering=1, ports with
// the same PVID talk and a port in another VLAN is cut off — the bridge
// plugin's vlan option.
func TestBridgeVlanFiltering(t *testing.T) {
	kfeature.Require(t, kfeature.BridgeVlanFiltering)
	host := nstest.New(t, "sbh")
	h := nstest.Handle(t, host)
	on := true
	br := add(t, h, &netlink.Bridge{LinkAttrs: attrs("br-vf"), VlanFiltering: &on})
	if f := br.(*netlink.Bridge).VlanFiltering; f == nil || !*f {
		t.Fatal("vlan_filtering reads back off")
	}
	up(t, h, br)
	ns := map[string]string{}
	for i, port := range []struct {
		name string
		vid  uint16
	}{{"a", 10}, {"b", 10}, {"c", 20}} {
		c := nstest.New(t, "sb"+port.name)
		ns[port.name] = c
		hostEnd, ctrEnd := vethPair(t, h, "vp"+port.name, "eth"+port.name)
		if err := h.LinkSetMaster(hostEnd, br); err != nil {
			t.Fatalf("enslaving %s: %v", hostEnd.Attrs().Name, err)
		}
		// Replace the default PVID 1 with the port's VLAN, untagged.
		if err := h.BridgeVlanDel(hostEnd, 1, true, true, false, false); err != nil {
			t.Fatalf("removing vlan 1 from %s: %v", hostEnd.Attrs().Name, err)
		}
		if err := h.BridgeVlanAdd(hostEnd, port.vid, true, true, false, false); err != nil {
			t.Fatalf("adding vlan %d to %s: %v", port.vid, hostEnd.Attrs().Name, err)
		}
		up(t, h, hostEnd)
		hc, l := moveTo(t, h, ctrEnd, c)
		configure(t, hc, l, fmt.Sprintf("10.236.0.%d/24", i+1))
	}
	vlans, err := h.BridgeVlanList()
	if err != nil {
		t.Fatalf("listing bridge vlans: %v", err)
	}
	vpa, _ := h.LinkByName("vpa")
	if vs := vlans[int32(vpa.Attrs().Index)]; len(vs) != 1 || vs[0].Vid != 10 || !vs[0].PortVID() || !vs[0].EngressUntag() {
		t.Errorf("vlans on port vpa: %+v, want only vid 10 pvid untagged", vs)
	}
	mustReach(t, ns["a"], ns["b"], "10.236.0.2")

	// c is in VLAN 20: nothing it sends may reach a.
	payload := []byte("must not cross vlans")
	l := listen(t, ns["a"], "10.236.0.1")
	send(t, ns["c"], "10.236.0.1", payload)
	got, err := receives(l, payload, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got {
		t.Error("UDP from the VLAN 20 port reached the VLAN 10 port")
	}
}

// TestHostDeviceMove: a host link moved into a container namespace,
// renamed and configured there, then moved back under its own name — the
// host-device plugin's ADD and DEL.
func TestHostDeviceMove(t *testing.T) {
	kfeature.Require(t, kfeature.Dummy)
	host, c := nstest.New(t, "shh"), nstest.New(t, "shc")
	h := nstest.Handle(t, host)
	dev := add(t, h, &netlink.Dummy{LinkAttrs: attrs("hostdev0")})
	mac := dev.Attrs().HardwareAddr.String()
	hc, moved := moveTo(t, h, dev, c)
	if err := hc.LinkSetName(moved, "net1"); err != nil {
		t.Fatalf("renaming in the container: %v", err)
	}
	if _, err := hc.LinkByName("hostdev0"); err == nil {
		t.Fatal("old name still present after rename")
	}
	net1, err := hc.LinkByName("net1")
	if err != nil {
		t.Fatal(err)
	}
	configure(t, hc, net1, "10.237.0.1/24")
	if got := net1.Attrs().HardwareAddr.String(); got != mac {
		t.Errorf("MAC changed on the move: %s, want %s", got, mac)
	}
	if _, err := h.LinkByName("hostdev0"); err == nil {
		t.Error("device still visible in the host namespace")
	}
	// DEL: down, back to the original name, back to the host.
	if err := hc.LinkSetDown(net1); err != nil {
		t.Fatal(err)
	}
	if err := hc.LinkSetName(net1, "hostdev0"); err != nil {
		t.Fatal(err)
	}
	back, err := hc.LinkByName("hostdev0")
	if err != nil {
		t.Fatal(err)
	}
	hh, _ := moveTo(t, hc, back, host)
	if l, err := hh.LinkByName("hostdev0"); err != nil || l.Attrs().HardwareAddr.String() != mac {
		t.Errorf("device not back in the host namespace with its MAC: %v", err)
	}
}
