package topology

import (
	"bytes"
	"strings"
	"testing"

	"github.com/knit-cni/knit/internal/nstest"
	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
)

func handle(t *testing.T, path string) *netlink.Handle {
	t.Helper()
	h, err := vnetns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nl.Close)
	return nl
}

func TestCaptureBridgeAndVethAcrossNamespaces(t *testing.T) {
	host := nstest.New(t, "toph")
	ctr := nstest.New(t, "topc")
	hn, cn := handle(t, host), handle(t, ctr)

	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
	if err := hn.LinkAdd(br); err != nil {
		t.Fatal(err)
	}
	ctrFd, err := vnetns.GetFromPath(ctr)
	if err != nil {
		t.Fatal(err)
	}
	defer ctrFd.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "vethhost"}, PeerName: "eth0", PeerNamespace: netlink.NsFd(ctrFd)}
	if err := hn.LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	hv, err := hn.LinkByName("vethhost")
	if err != nil {
		t.Fatal(err)
	}
	if err := hn.LinkSetMaster(hv, br); err != nil {
		t.Fatal(err)
	}
	if err := hn.LinkSetHairpin(hv, true); err != nil {
		t.Fatal(err)
	}
	eth0, err := cn.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := netlink.ParseAddr("10.9.0.2/24")
	if err := cn.AddrAdd(eth0, addr); err != nil {
		t.Fatal(err)
	}
	if err := cn.LinkSetUp(eth0); err != nil {
		t.Fatal(err)
	}

	snap, err := Capture([]NS{{Name: "host", Path: host}, {Name: "c1", Path: ctr}})
	if err != nil {
		t.Fatal(err)
	}
	find := func(ns, name string) *Link {
		for _, n := range snap.Namespaces {
			if n.Name != ns {
				continue
			}
			for _, l := range n.Links {
				if l.Name == name {
					return l
				}
			}
		}
		t.Fatalf("link %s:%s not captured", ns, name)
		return nil
	}
	hl := find("host", "vethhost")
	if hl.Master != "br0" || !hl.Hairpin {
		t.Errorf("host veth: master=%q hairpin=%v, want br0 and hairpin", hl.Master, hl.Hairpin)
	}
	if hl.Peer == nil || *hl.Peer != (Ref{"c1", "eth0"}) {
		t.Errorf("host veth peer = %+v, want c1:eth0", hl.Peer)
	}
	cl := find("c1", "eth0")
	if cl.Peer == nil || *cl.Peer != (Ref{"host", "vethhost"}) {
		t.Errorf("container veth peer = %+v, want host:vethhost", cl.Peer)
	}
	if len(cl.Addrs) != 1 || cl.Addrs[0] != "10.9.0.2/24" || !cl.Up {
		t.Errorf("container eth0 addrs=%v up=%v", cl.Addrs, cl.Up)
	}
	var buf bytes.Buffer
	snap.Text(&buf)
	for _, want := range []string{"ports: vethhost", "[hairpin]", "<-> c1:eth0", "10.9.0.2/24"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, buf.String())
		}
	}
}
