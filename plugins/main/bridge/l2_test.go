package bridge_test

import (
	"encoding/binary"
	"github.com/knit-cni/knit/internal/plugintest"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/knit-cni/knit/internal/netns"
	"github.com/knit-cni/knit/internal/nft"
	"github.com/knit-cni/knit/internal/nstest"
	"github.com/knit-cni/knit/internal/probe"
	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// udpFrame builds an Ethernet/IPv4/UDP frame (UDP checksum 0 = none).
func udpFrame(dstMAC, srcMAC net.HardwareAddr, src, dst net.IP, port int, payload []byte) []byte {
	ip := make([]byte, 20)
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(payload)))
	ip[8] = 64
	ip[9] = unix.IPPROTO_UDP
	copy(ip[12:16], src.To4())
	copy(ip[16:20], dst.To4())
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = (sum >> 16) + (sum & 0xffff)
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	udp := make([]byte, 8)
	binary.BigEndian.PutUint16(udp[0:], 40000)
	binary.BigEndian.PutUint16(udp[2:], uint16(port))
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload)))
	frame := append(append([]byte{}, dstMAC...), srcMAC...)
	frame = append(frame, 0x08, 0x00)
	frame = append(frame, ip...)
	frame = append(frame, udp...)
	return append(frame, payload...)
}

// Hairpin: a frame the container sends to its own MAC leaves through eth0,
// reaches the bridge and comes back through the same port only when the
// port is in hairpin mode. The container's own UDP listener proves it.
func TestHairpinTraffic(t *testing.T) {
	l := newLab(t)
	c := nstest.New(t, "hp")
	r := l.Add("hp", c, l.Conf("talk-bridge.conf", "1.0.0", nil))
	ip := firstIP(t, r, true).Address.IP
	mac, _ := net.ParseMAC(r.Interfaces[2].Mac)

	var conn *net.UDPConn
	var fd int
	ifindex := nstest.Link(t, c, "eth0").Attrs().Index
	err := netns.Do(c, func() error {
		var err error
		if conn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: ip, Port: 9999}); err != nil {
			return err
		}
		if fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifindex})
	})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	defer unix.Close(fd)

	send := func(payload string) {
		fake, _ := net.ParseMAC("02:00:00:00:77:01")
		frame := udpFrame(mac, fake, net.ParseIP("10.22.200.200"), ip, 9999, []byte(payload))
		if err := unix.Sendto(fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: ifindex, Halen: 6}); err != nil {
			t.Fatalf("sending a frame: %v", err)
		}
	}
	recv := func(wait time.Duration) string {
		buf := make([]byte, 100)
		conn.SetReadDeadline(time.Now().Add(wait))
		n, _, err := conn.ReadFromUDP(buf)
		if err != nil {
			return ""
		}
		return string(buf[:n])
	}

	send("via-hairpin")
	if got := recv(2 * time.Second); got != "via-hairpin" {
		t.Fatalf("the frame did not come back through the bridge (got %q)", got)
	}
	// Control: with hairpin off the same frame is not reflected.
	h := nstest.Handle(t, l.Host)
	hostPort, err := h.LinkByName(r.Interfaces[1].Name)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetHairpin(hostPort, false); err != nil {
		t.Fatal(err)
	}
	send("no-hairpin")
	if got := recv(300 * time.Millisecond); got != "" {
		t.Fatalf("frame came back with hairpin off: %q", got)
	}
	// CHECK notices the port setting was changed.
	if e := l.Fails("CHECK", "hp", c, withPrev(t, l.Conf("talk-bridge.conf", "1.0.0", nil), r, "1.0.0")); !strings.Contains(e.Error(), "hairpin") {
		t.Errorf("CHECK error %q does not mention hairpin", e.Error())
	}
}

// macspoofchk: frames from a container with a changed MAC are dropped at
// the bridge; the rule is tagged with its owner and removed on DEL.
func TestMacSpoofCheck(t *testing.T) {
	l := newLab(t)
	conf := l.Conf("talk-bridge.conf", "1.0.0", map[string]any{"macspoofchk": true})
	c1, c2 := nstest.New(t, "s1"), nstest.New(t, "s2")
	r1 := l.Add("s1", c1, conf)
	r2 := l.Add("s2", c2, conf)
	dst := firstIP(t, r2, true).Address.IP
	ping(t, c1, dst)
	if n := spoofRules(t, l); n != 2 {
		t.Fatalf("%d spoof-check rules; want 2", n)
	}
	l.OK("CHECK", "s1", c1, withPrev(t, conf, r1, "1.0.0"))

	h := nstest.Handle(t, c1)
	eth0 := nstest.Link(t, c1, "eth0")
	spoofed, _ := net.ParseMAC("02:00:00:00:66:01")
	if err := h.LinkSetHardwareAddr(eth0, spoofed); err != nil {
		t.Fatal(err)
	}
	// Forget c1's old MAC in c2 so the reply needs c1's (dropped) ARP answer.
	h2 := nstest.Handle(t, c2)
	_ = h2.NeighDel(&netlink.Neigh{LinkIndex: nstest.Link(t, c2, "eth0").Attrs().Index, IP: firstIP(t, r1, true).Address.IP})
	if _, err := probe.Ping(c1, dst, 500*time.Millisecond); err == nil {
		t.Fatal("ping with a spoofed source MAC got through")
	}
	if e := l.Fails("CHECK", "s1", c1, withPrev(t, conf, r1, "1.0.0")); !strings.Contains(e.Error(), "MAC") {
		t.Errorf("CHECK error %q does not mention the MAC", e.Error())
	}
	orig, _ := net.ParseMAC(r1.Interfaces[2].Mac)
	if err := h.LinkSetHardwareAddr(eth0, orig); err != nil {
		t.Fatal(err)
	}
	ping(t, c1, dst)

	l.OK("DEL", "s1", c1, withPrev(t, conf, r1, "1.0.0"))
	if n := spoofRules(t, l); n != 1 {
		t.Fatalf("%d spoof-check rules after DEL; want 1", n)
	}
	l.OK("DEL", "s2", c2, conf)
	if n := spoofRules(t, l); n != 0 {
		t.Fatalf("%d spoof-check rules after DEL; want 0", n)
	}
}

// spoofRules counts the owner-tagged rules in the lab's bridge-family table.
func spoofRules(t *testing.T, l *plugintest.Lab) int {
	t.Helper()
	h, err := vnetns.GetFromPath(l.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(h)))
	if err != nil {
		t.Fatal(err)
	}
	table := &nftables.Table{Name: nft.TableName, Family: nftables.TableFamilyBridge}
	rules, err := c.GetRules(table, &nftables.Chain{Name: "macspoof", Table: table})
	if err != nil {
		return 0
	}
	n := 0
	for _, r := range rules {
		if o, ok := nft.ParseOwnerTag(r.UserData); ok && o.Network == talkNet {
			n++
		}
	}
	return n
}

// VLAN options need bridge VLAN filtering; on a kernel without it ADD fails
// cleanly (and this test says which feature is missing).
func TestVlan(t *testing.T) {
	l := newLab(t)
	c := nstest.New(t, "vl")
	conf := l.Conf("talk-bridge.conf", "1.0.0", map[string]any{"bridge": "kvlbr", "vlan": 100})
	r := l.Exec("ADD", "vl", c, "eth0", conf)
	if r.ExitCode != 0 {
		if strings.Contains(string(r.Stdout), "CONFIG_BRIDGE_VLAN_FILTERING") {
			if nstest.LinkExists(t, c, "eth0") {
				t.Error("failed ADD left eth0 behind")
			}
			if got := l.Reservations(talkNet); len(got) != 0 {
				t.Errorf("failed ADD left a reservation: %v", got)
			}
			t.Skip("kernel lacks bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING): vlan, vlanTrunk and preserveDefaultVlan cannot be tested here")
		}
		t.Fatalf("ADD with vlan failed: %s", r.Stdout)
	}
	h := nstest.Handle(t, l.Host)
	vl, err := h.BridgeVlanList()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, vs := range vl {
		for _, v := range vs {
			if v.Vid == 100 {
				found = true
			}
		}
	}
	if !found {
		t.Errorf("no port has VLAN 100: %v", vl)
	}
	l.OK("DEL", "vl", c, conf)
}
