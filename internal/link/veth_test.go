package link

import (
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/knit-cni/knit/internal/nstest"
	"github.com/vishvananda/netlink"
)

// shape is what two veth ends made the same way share: everything but
// their identity (index, name, MAC, peer, netns id).
func shape(l netlink.Link) netlink.LinkAttrs {
	a := *l.Attrs()
	a.Index, a.Name, a.HardwareAddr, a.ParentIndex, a.NetNsID = 0, "", nil, 0, 0
	a.Statistics, a.Xdp, a.Vfs, a.Slave, a.Protinfo, a.AltNames = nil, nil, nil, nil, nil, nil
	return a
}

// CreateVeth's own request makes the same pair as the library's LinkAdd of
// the container end with the host end as its peer (the earlier way):
// MTU, txqueuelen (0 on the host end, as the library sends), queues,
// flags, GSO/GRO limits.
func TestCreateVethSameAsLibrary(t *testing.T) {
	host, cont := openPair(t)
	old, err := Open(nstest.New(t, "lo"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(old.Close)
	mac, _ := net.ParseMAC("0a:58:0a:01:01:07")
	for _, mtu := range []int{0, 1400} {
		attrs := netlink.NewLinkAttrs()
		attrs.Name, attrs.MTU, attrs.HardwareAddr = "eth0", mtu, mac
		lib := &netlink.Veth{LinkAttrs: attrs, PeerName: "klold", PeerNamespace: netlink.NsFd(host.Fd()), PeerMTU: uint32(mtu)}
		if err := old.Handle.LinkAdd(lib); err != nil {
			t.Fatal(err)
		}
		p, err := CreateVeth(host, cont, Veth{ContainerName: "eth0", HostName: "klnew", MTU: mtu, ContainerMAC: mac})
		if err != nil {
			t.Fatal(err)
		}
		oh, err := host.Handle.LinkByName("klold")
		if err != nil {
			t.Fatal(err)
		}
		oc, err := old.Handle.LinkByName("eth0")
		if err != nil {
			t.Fatal(err)
		}
		nh, err := host.Handle.LinkByName("klnew")
		if err != nil {
			t.Fatal(err)
		}
		nc, err := cont.Handle.LinkByName("eth0")
		if err != nil {
			t.Fatal(err)
		}
		if o, n := shape(oh), shape(nh); !equalAttrs(o, n) {
			t.Errorf("MTU %d: host end\nnew %+v\nold %+v", mtu, n, o)
		}
		if o, n := shape(oc), shape(nc); !equalAttrs(o, n) {
			t.Errorf("MTU %d: container end\nnew %+v\nold %+v", mtu, n, o)
		}
		if nc.Attrs().HardwareAddr.String() != mac.String() || nh.Attrs().HardwareAddr == nil {
			t.Errorf("MACs: container %s (want %s), host %s", nc.Attrs().HardwareAddr, mac, nh.Attrs().HardwareAddr)
		}
		if nc.Attrs().ParentIndex != nh.Attrs().Index || nh.Attrs().ParentIndex != nc.Attrs().Index {
			t.Errorf("peers: container end's %d (host end is %d), host end's %d (container end is %d)",
				nc.Attrs().ParentIndex, nh.Attrs().Index, nh.Attrs().ParentIndex, nc.Attrs().Index)
		}
		if p.Host.Attrs().Index != nh.Attrs().Index || p.Container.Attrs().Index != nc.Attrs().Index {
			t.Errorf("CreateVeth returned indexes %d/%d; the links are %d/%d", p.Host.Attrs().Index, p.Container.Attrs().Index, nh.Attrs().Index, nc.Attrs().Index)
		}
		for _, c := range []struct {
			ns   *Namespace
			name string
		}{{host, "eth0"}, {cont, "klnew"}, {old, "klold"}} {
			if _, err := c.ns.Handle.LinkByName(c.name); !IsNotFound(err) {
				t.Errorf("%s is in %s: %v", c.name, c.ns.where(), err)
			}
		}
		for _, c := range []struct {
			ns   *Namespace
			name string
		}{{old, "eth0"}, {cont, "eth0"}} {
			if _, err := DeleteByName(c.ns, c.name); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func equalAttrs(a, b netlink.LinkAttrs) bool {
	return a.MTU == b.MTU && a.TxQLen == b.TxQLen && a.Flags == b.Flags && a.RawFlags == b.RawFlags &&
		a.NumTxQueues == b.NumTxQueues && a.NumRxQueues == b.NumRxQueues && a.OperState == b.OperState &&
		a.MasterIndex == b.MasterIndex && a.Promisc == b.Promisc && a.GSOMaxSize == b.GSOMaxSize &&
		a.GSOMaxSegs == b.GSOMaxSegs && a.GROMaxSize == b.GROMaxSize && a.TSOMaxSize == b.TSOMaxSize &&
		a.TSOMaxSegs == b.TSOMaxSegs && a.Group == b.Group && a.EncapType == b.EncapType
}

// MasterIndex makes the host end a bridge port at creation; AttachPort then
// only sets the port flags.
func TestCreateVethWithMaster(t *testing.T) {
	host, cont := openPair(t)
	br, _, err := EnsureBridge(host, Bridge{Name: "klbr0"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := CreateVeth(host, cont, Veth{ContainerName: "eth0", HostUp: true, HostNoLinkLocal: true, MasterIndex: br.Index})
	if err != nil {
		t.Fatal(err)
	}
	hl, err := host.Handle.LinkByName(p.Host.Attrs().Name)
	if err != nil {
		t.Fatal(err)
	}
	if hl.Attrs().MasterIndex != br.Index || p.Host.Attrs().MasterIndex != br.Index {
		t.Fatalf("host end's master %d (reported %d); want bridge %d", hl.Attrs().MasterIndex, p.Host.Attrs().MasterIndex, br.Index)
	}
	if hl.Attrs().Flags&net.FlagUp == 0 {
		t.Error("host end not up")
	}
	if err := AttachPort(host, p.Host, br, Port{Hairpin: true}); err != nil {
		t.Fatal(err)
	}
	pi, err := host.Handle.LinkGetProtinfo(p.Host)
	if err != nil {
		t.Fatal(err)
	}
	if !pi.Hairpin {
		t.Errorf("protinfo %+v; want hairpin", pi)
	}
	if _, err := cont.Handle.LinkByName("eth0"); err != nil {
		t.Errorf("container end: %v", err)
	}
}

// hostVeths lists the veth links in ns.
func hostVeths(t *testing.T, ns *Namespace) []string {
	t.Helper()
	links, err := ns.Handle.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range links {
		if l.Type() == "veth" {
			out = append(out, l.Attrs().Name)
		}
	}
	return out
}

// A master that is gone or is no master fails the creation, says why, and
// leaves no link in either namespace.
func TestCreateVethBadMaster(t *testing.T) {
	host, cont := openPair(t)
	_, err := CreateVeth(host, cont, Veth{ContainerName: "eth0", MasterIndex: 4000})
	if err == nil || !strings.Contains(err.Error(), "no longer exists") {
		t.Errorf("CreateVeth with a missing master = %v; want 'no longer exists'", err)
	}
	if v := hostVeths(t, host); len(v) != 0 {
		t.Errorf("host namespace keeps %v", v)
	}
	if v := hostVeths(t, cont); len(v) != 0 {
		t.Errorf("container namespace keeps %v", v)
	}

	other, err := CreateVeth(host, cont, Veth{ContainerName: "eth1"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = CreateVeth(host, cont, Veth{ContainerName: "eth0", MasterIndex: other.Host.Attrs().Index})
	if err == nil || !strings.Contains(err.Error(), "cannot take ports") {
		t.Fatalf("CreateVeth with a veth as master = %v; want 'cannot take ports'", err)
	}
	if v := hostVeths(t, host); len(v) != 1 {
		t.Errorf("host namespace has veths %v; want only %s", v, other.Host.Attrs().Name)
	}
	if _, err := cont.Handle.LinkByName("eth0"); !IsNotFound(err) {
		t.Errorf("container keeps eth0: %v", err)
	}
	if _, err := CreateVeth(host, cont, Veth{ContainerName: "eth0", MasterIndex: -1}); err == nil {
		t.Error("negative master index accepted")
	}
}

// Name collisions: the container's name or a fixed host name in use gives
// an ExistsError naming it and where; nothing new is left behind.
func TestCreateVethExists(t *testing.T) {
	host, cont := openPair(t)
	first, err := CreateVeth(host, cont, Veth{ContainerName: "eth0", HostName: "klfixed"})
	if err != nil {
		t.Fatal(err)
	}
	var ee *ExistsError
	_, err = CreateVeth(host, cont, Veth{ContainerName: "eth0"})
	if !errors.As(err, &ee) || ee.Name != "eth0" || ee.Path != cont.Path {
		t.Errorf("container name taken: %v; want ExistsError for eth0 in %s", err, cont.Path)
	}
	_, err = CreateVeth(host, cont, Veth{ContainerName: "eth1", HostName: "klfixed"})
	if !errors.As(err, &ee) || ee.Name != "klfixed" || ee.Path != "" {
		t.Errorf("host name taken: %v; want ExistsError for klfixed in the host", err)
	}
	if _, err := cont.Handle.LinkByName("eth1"); !IsNotFound(err) {
		t.Errorf("eth1 left in the container: %v", err)
	}
	if v := hostVeths(t, host); len(v) != 1 || v[0] != first.Host.Attrs().Name {
		t.Errorf("host veths %v; want only klfixed", v)
	}
}
