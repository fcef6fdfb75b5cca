package ptp_test

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/knit-cni/knit/internal/nstest"
	"github.com/knit-cni/knit/pkg/cni"
	"github.com/vishvananda/netlink"
)

const ptpNet = "mynet"

// The talk's ptp config, as written (1.0.0) and at 0.4.0 and 1.1.0: two
// containers reach each other and the gateway, DNS comes from the config,
// CHECK passes, DEL frees everything and can be repeated.
func TestTalkPtpConfig(t *testing.T) {
	for _, v := range []string{"", "0.4.0", "1.1.0"} {
		t.Run("v"+v, func(t *testing.T) {
			l := newLab(t)
			conf := l.Conf("talk-ptp.conf", v, nil)
			ver := v
			if ver == "" {
				ver = "1.0.0"
			}
			c1, c2 := nstest.New(t, "p1"), nstest.New(t, "p2")
			start := time.Now()
			r1 := l.Add("c1", c1, conf)
			t.Logf("ADD took %s", time.Since(start))
			r2 := l.Add("c2", c2, conf)
			subnet := mustCIDR("10.1.1.0/24")
			for _, r := range []*cni.Result{r1, r2} {
				ip := firstIP(t, r, true)
				if !subnet.Contains(ip.Address.IP) || !ip.Gateway.Equal(net.ParseIP("10.1.1.1")) {
					t.Fatalf("address %s gateway %s", ip.Address.String(), ip.Gateway)
				}
				if len(r.Interfaces) != 2 || r.Interfaces[1].Sandbox == "" || ip.Interface == nil || *ip.Interface != 1 {
					t.Fatalf("result shape: %+v ip.interface=%v", r.Interfaces, ip.Interface)
				}
				if strings.Join(r.DNS.Nameservers, ",") != "10.1.1.1,8.8.8.8" {
					t.Errorf("dns %+v; want the config's", r.DNS)
				}
			}
			a1, a2 := firstIP(t, r1, true).Address.IP, firstIP(t, r2, true).Address.IP
			ping(t, c1, a2)
			ping(t, c2, a1)
			ping(t, c1, net.ParseIP("10.1.1.1"))

			// Container side: /32 to the gateway, subnet via the gateway.
			h := nstest.Handle(t, c1)
			lk, _ := h.LinkByName("eth0")
			rs, _ := h.RouteList(lk, netlink.FAMILY_V4)
			var got []string
			for _, r := range rs {
				got = append(got, r.Dst.String()+" via "+r.Gw.String())
			}
			joined := strings.Join(got, "; ")
			if !strings.Contains(joined, "10.1.1.1/32 via <nil>") || !strings.Contains(joined, "10.1.1.0/24 via 10.1.1.1") {
				t.Errorf("container routes %s", joined)
			}

			l.OK("CHECK", "c1", c1, withPrev(t, conf, r1, ver))
			start = time.Now()
			l.OK("DEL", "c1", c1, withPrev(t, conf, r1, ver))
			t.Logf("DEL took %s", time.Since(start))
			l.OK("DEL", "c1", c1, conf)
			l.OK("DEL", "c2", c2, withPrev(t, conf, r2, ver))
			if got := l.Reservations(ptpNet); len(got) != 0 {
				t.Fatalf("IPAM still holds %v", got)
			}
			if nstest.LinkExists(t, c2, "eth0") {
				t.Error("eth0 left in c2")
			}
		})
	}
}

// ipMasq: entries while attached, CHECK notices a removed entry and a
// removed route, GC and DEL clean up, DEL works with the netns gone.
func TestPtpMasqCheckGCAndGoneNetns(t *testing.T) {
	l := newLab(t)
	conf := l.Conf("talk-ptp.conf", "1.1.0", map[string]any{"ipMasq": true})
	c1, c2, c3 := nstest.New(t, "m1"), nstest.New(t, "m2"), nstest.New(t, "m3")
	r1 := l.Add("m1", c1, conf)
	r2 := l.Add("m2", c2, conf)
	r3 := l.Add("m3", c3, conf)
	if got := l.MasqEntries(ptpNet); len(got) != 3 {
		t.Fatalf("masquerade entries %v; want 3", got)
	}
	p1 := withPrev(t, conf, r1, "1.1.0")
	l.OK("CHECK", "m1", c1, p1)

	removeMasq(t, l, "m1", firstIP(t, r1, true).Address)
	if e := l.Fails("CHECK", "m1", c1, p1); !strings.Contains(e.Error(), "masquerade") {
		t.Errorf("CHECK error %q does not mention masquerade", e.Error())
	}
	p2 := withPrev(t, conf, r2, "1.1.0")
	h := nstest.Handle(t, c2)
	lk, _ := h.LinkByName("eth0")
	if err := h.RouteDel(&netlink.Route{LinkIndex: lk.Attrs().Index, Dst: mustCIDR("10.1.1.0/24"), Gw: net.ParseIP("10.1.1.1")}); err != nil {
		t.Fatal(err)
	}
	if e := l.Fails("CHECK", "m2", c2, p2); !strings.Contains(e.Error(), "10.1.1.0/24 via 10.1.1.1") {
		t.Errorf("CHECK error %q does not name the route", e.Error())
	}

	// GC keeps m1 and m2 only: m3's entry and reservation go.
	gc := l.Conf("talk-ptp.conf", "1.1.0", map[string]any{"ipMasq": true,
		"cni.dev/valid-attachments": []map[string]string{{"containerID": "m1", "ifname": "eth0"}, {"containerID": "m2", "ifname": "eth0"}}})
	if r := nstest.Exec(t, l.Host, l.Plugins, "ptp", "GC", nil, gc); r.ExitCode != 0 {
		t.Fatalf("GC: %s", r.Stdout)
	}
	for _, e := range l.MasqEntries(ptpNet) {
		if e.Owner.ContainerID == "m3" {
			t.Errorf("GC left m3's entry")
		}
	}
	if got := l.Reservations(ptpNet); len(got) != 2 {
		t.Errorf("reservations after GC %v; want 2", got)
	}

	// m3's namespace vanishes; DEL still succeeds.
	if err := deleteNetns(c3); err != nil {
		t.Fatal(err)
	}
	l.OK("DEL", "m3", c3, withPrev(t, conf, r3, "1.1.0"))
	l.OK("DEL", "m1", c1, p1)
	l.OK("DEL", "m2", c2, p2)
	if got := l.MasqEntries(ptpNet); len(got) != 0 {
		t.Fatalf("masquerade entries left: %v", got)
	}
	if got := l.Reservations(ptpNet); len(got) != 0 {
		t.Fatalf("reservations left: %v", got)
	}
}

func TestPtpDualStack(t *testing.T) {
	l := newLab(t)
	conf := l.Conf("talk-ptp.conf", "1.0.0", map[string]any{
		"ipam": map[string]any{"type": "host-local", "dataDir": l.DataDir, "ranges": []any{
			[]map[string]string{{"subnet": "10.1.2.0/24"}},
			[]map[string]string{{"subnet": "fd00:12::/64"}},
		}, "routes": []map[string]string{{"dst": "0.0.0.0/0"}, {"dst": "::/0"}}},
	})
	c1, c2 := nstest.New(t, "q1"), nstest.New(t, "q2")
	r1 := l.Add("q1", c1, conf)
	r2 := l.Add("q2", c2, conf)
	ping(t, c1, firstIP(t, r2, false).Address.IP)
	ping(t, c2, firstIP(t, r1, true).Address.IP)
	ping(t, c1, net.ParseIP("fd00:12::1"))
	l.OK("CHECK", "q1", c1, withPrev(t, conf, r1, "1.0.0"))
	l.OK("DEL", "q1", c1, withPrev(t, conf, r1, "1.0.0"))
	l.OK("DEL", "q2", c2, conf)
	if got := l.Reservations(ptpNet); len(got) != 0 {
		t.Fatalf("reservations left: %v", got)
	}
}

func TestPtpNeedsIPAM(t *testing.T) {
	l := newLab(t)
	c := nstest.New(t, "pn")
	e := l.Fails("ADD", "x", c, []byte(`{"cniVersion":"1.0.0","name":"mynet","type":"ptp"}`))
	if e.Code != cni.ErrInvalidNetworkConfig || !strings.Contains(e.Msg, "ipam") {
		t.Fatalf("error %+v", e)
	}
	if nstest.LinkExists(t, c, "eth0") {
		t.Fatal("failed ADD left eth0 behind")
	}
}
