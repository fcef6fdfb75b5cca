package bridge_test

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/knit-cni/knit/internal/nstest"
	"github.com/knit-cni/knit/pkg/cni"
	"github.com/vishvananda/netlink"
)

const talkNet = "imthebestnetever"

// The talk's bridge config, as written: addresses, traffic, hairpin,
// masquerade present while attached and gone after DEL, CHECK, repeat DEL.
func TestTalkBridgeConfig(t *testing.T) {
	for _, v := range []string{"", "0.4.0", "1.0.0", "1.1.0"} {
		t.Run("v"+v, func(t *testing.T) {
			l := newLab(t)
			c1, c2 := nstest.New(t, "b1"), nstest.New(t, "b2")
			conf := l.Conf("talk-bridge.conf", v, nil)

			start := time.Now()
			r1 := l.Add("c1", c1, conf)
			t.Logf("ADD took %s", time.Since(start))
			r2 := l.Add("c2", c2, conf)

			subnet := mustCIDR("10.22.0.0/16")
			gw := net.ParseIP("10.22.0.1")
			for _, r := range []*cni.Result{r1, r2} {
				ip := firstIP(t, r, true)
				if !subnet.Contains(ip.Address.IP) || !ip.Gateway.Equal(gw) {
					t.Fatalf("address %s gateway %s; want in %s via %s", ip.Address.String(), ip.Gateway, subnet, gw)
				}
				if v == "1.0.0" || v == "1.1.0" || v == "0.4.0" {
					if len(r.Interfaces) != 3 || r.Interfaces[0].Name != "myawesomebr" || r.Interfaces[2].Sandbox == "" ||
						ip.Interface == nil || *ip.Interface != 2 {
						t.Fatalf("result shape: %+v ip.interface=%v", r.Interfaces, ip.Interface)
					}
					for _, i := range r.Interfaces {
						if i.Mac == "" {
							t.Errorf("interface %s has no MAC in the result", i.Name)
						}
					}
				}
			}
			a1, a2 := firstIP(t, r1, true).Address.IP, firstIP(t, r2, true).Address.IP
			ping(t, c1, a2)
			ping(t, c2, a1)
			ping(t, c1, gw)

			// Gateway address on the bridge, hairpin on both ports.
			h := nstest.Handle(t, l.Host)
			br, err := h.LinkByName("myawesomebr")
			if err != nil {
				t.Fatal(err)
			}
			addrs, _ := h.AddrList(br, netlink.FAMILY_V4)
			if len(addrs) != 1 || addrs[0].IPNet.String() != "10.22.0.1/16" {
				t.Errorf("bridge addresses %v; want just 10.22.0.1/16", addrs)
			}
			ports := 0
			links, _ := h.LinkList()
			for _, lk := range links {
				if lk.Attrs().MasterIndex == br.Attrs().Index {
					ports++
					pi, err := h.LinkGetProtinfo(lk)
					if err != nil || !pi.Hairpin {
						t.Errorf("port %s hairpin=%v (%v); want on", lk.Attrs().Name, pi.Hairpin, err)
					}
				}
			}
			if ports != 2 {
				t.Errorf("bridge has %d ports; want 2", ports)
			}

			if got := l.MasqEntries(talkNet); len(got) != 2 {
				t.Fatalf("masquerade entries %v; want one per container", got)
			}
			if v != "" {
				l.OK("CHECK", "c1", c1, withPrev(t, conf, r1, v))
			}

			start = time.Now()
			l.OK("DEL", "c1", c1, withPrev(t, conf, r1, orDefault(v)))
			t.Logf("DEL took %s", time.Since(start))
			if got := l.MasqEntries(talkNet); len(got) != 1 || got[0].Owner.ContainerID != "c2" {
				t.Fatalf("after DEL c1 masquerade entries %v; want only c2's", got)
			}
			if nstest.LinkExists(t, c1, "eth0") {
				t.Error("eth0 still in c1 after DEL")
			}
			l.OK("DEL", "c1", c1, conf) // again, no prevResult
			l.OK("DEL", "c2", c2, conf)
			if got := l.MasqEntries(talkNet); len(got) != 0 {
				t.Fatalf("after DEL masquerade entries %v; want none", got)
			}
			if got := l.Reservations(talkNet); len(got) != 0 {
				t.Fatalf("IPAM still holds %v after DEL", got)
			}
			// The bridge and its gateway address stay, as with the reference.
			if !nstest.LinkExists(t, l.Host, "myawesomebr") {
				t.Error("bridge removed on DEL")
			}
		})
	}
}

func orDefault(v string) string {
	if v == "" {
		return cni.Version010
	}
	return v
}

// DEL after the runtime deleted the namespace frees the address and the
// masquerade entry.
func TestDelAfterNetnsGone(t *testing.T) {
	l := newLab(t)
	c := nstest.New(t, "bg")
	conf := l.Conf("talk-bridge.conf", "1.0.0", nil)
	r := l.Add("gone", c, conf)
	if len(l.Reservations(talkNet)) != 1 {
		t.Fatal("no reservation after ADD")
	}
	if err := deleteNetns(c); err != nil {
		t.Fatal(err)
	}
	l.OK("DEL", "gone", c, withPrev(t, conf, r, "1.0.0"))
	if got := l.Reservations(talkNet); len(got) != 0 {
		t.Fatalf("IPAM still holds %v", got)
	}
	if got := l.MasqEntries(talkNet); len(got) != 0 {
		t.Fatalf("masquerade entries left: %v", got)
	}
	l.OK("DEL", "gone", c, conf)
	l.OK("DEL", "gone", "", conf) // no CNI_NETNS at all
}

// CHECK reports an address, a route or a masquerade entry removed behind
// the plugin's back.
func TestCheckFindsDamage(t *testing.T) {
	l := newLab(t)
	conf := l.Conf("talk-bridge.conf", "1.1.0", nil)
	cases := []struct {
		name   string
		damage func(t *testing.T, c string, r *cni.Result)
		want   string
	}{
		{"address", func(t *testing.T, c string, r *cni.Result) {
			h := nstest.Handle(t, c)
			lk, _ := h.LinkByName("eth0")
			ip := firstIP(t, r, true)
			if err := h.AddrDel(lk, &netlink.Addr{IPNet: &ip.Address}); err != nil {
				t.Fatal(err)
			}
		}, "address"},
		{"route", func(t *testing.T, c string, r *cni.Result) {
			h := nstest.Handle(t, c)
			lk, _ := h.LinkByName("eth0")
			def := &netlink.Route{LinkIndex: lk.Attrs().Index, Dst: mustCIDR("0.0.0.0/0"), Gw: net.ParseIP("10.22.0.1")}
			if err := h.RouteDel(def); err != nil {
				t.Fatal(err)
			}
		}, "route to 0.0.0.0/0 via 10.22.0.1"},
		{"masquerade", func(t *testing.T, c string, r *cni.Result) {
			// Another runtime's DEL of the same owner removes the entry only.
			ip := firstIP(t, r, true)
			removeMasq(t, l, "dmg-masquerade", ip.Address)
		}, "masquerade"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := nstest.New(t, "bk")
			id := "dmg-" + tc.name
			r := l.Add(id, c, conf)
			prev := withPrev(t, conf, r, "1.1.0")
			if out := l.Exec("CHECK", id, c, "eth0", prev); out.ExitCode != 0 {
				t.Fatalf("CHECK before damage failed: %s", out.Stdout)
			}
			tc.damage(t, c, r)
			e := l.Fails("CHECK", id, c, prev)
			if !strings.Contains(e.Error(), tc.want) {
				t.Fatalf("CHECK error %q does not mention %q", e.Error(), tc.want)
			}
			l.OK("DEL", id, c, prev)
		})
	}
}

// GC drops the masquerade entries and IPAM reservations of attachments not
// in the valid list and keeps the others.
func TestGC(t *testing.T) {
	l := newLab(t)
	conf := l.Conf("talk-bridge.conf", "1.1.0", nil)
	keep, lose := nstest.New(t, "bk"), nstest.New(t, "bl")
	l.Add("keep", keep, conf)
	l.Add("lose", lose, conf)
	if len(l.MasqEntries(talkNet)) != 2 || len(l.Reservations(talkNet)) != 2 {
		t.Fatal("setup: want two masquerade entries and two reservations")
	}
	gc := l.Conf("talk-bridge.conf", "1.1.0", map[string]any{
		"cni.dev/valid-attachments": []map[string]string{{"containerID": "keep", "ifname": "eth0"}},
	})
	r := nstest.Exec(t, l.Host, l.Plugins, "bridge", "GC", nil, gc)
	if r.ExitCode != 0 {
		t.Fatalf("GC failed: %s", r.Stdout)
	}
	es := l.MasqEntries(talkNet)
	if len(es) != 1 || es[0].Owner.ContainerID != "keep" {
		t.Fatalf("after GC masquerade entries %v; want only keep's", es)
	}
	if got := l.Reservations(talkNet); len(got) != 1 {
		t.Fatalf("after GC reservations %v; want one", got)
	}
	ping(t, keep, net.ParseIP("10.22.0.1"))
}

// Dual stack: one v4 and one v6 range; both families reach each other and
// the gateway.
func TestDualStack(t *testing.T) {
	l := newLab(t)
	conf := l.Conf("talk-bridge.conf", "1.0.0", map[string]any{
		"ipam": map[string]any{"type": "host-local", "dataDir": l.DataDir, "ranges": []any{
			[]map[string]string{{"subnet": "10.23.0.0/24"}},
			[]map[string]string{{"subnet": "fd00:23::/64"}},
		}},
	})
	c1, c2 := nstest.New(t, "d1"), nstest.New(t, "d2")
	r1 := l.Add("d1", c1, conf)
	r2 := l.Add("d2", c2, conf)
	v6a, v6b := firstIP(t, r1, false), firstIP(t, r2, false)
	if !v6a.Gateway.Equal(net.ParseIP("fd00:23::1")) {
		t.Errorf("v6 gateway %s", v6a.Gateway)
	}
	foundDef := false
	for _, rt := range r1.Routes {
		if rt.Dst.String() == "::/0" {
			foundDef = true
		}
	}
	if !foundDef {
		t.Errorf("no ::/0 route in %v", r1.Routes)
	}
	ping(t, c1, v6b.Address.IP)
	ping(t, c2, net.ParseIP("fd00:23::1"))
	ping(t, c1, firstIP(t, r2, true).Address.IP)
	if got := l.MasqEntries(talkNet); len(got) != 4 {
		t.Errorf("masquerade entries %v; want 4 (2 per family)", got)
	}
	l.OK("CHECK", "d1", c1, withPrev(t, conf, r1, "1.0.0"))
	l.OK("DEL", "d1", c1, withPrev(t, conf, r1, "1.0.0"))
	l.OK("DEL", "d2", c2, conf)
	if got := l.Reservations(talkNet); len(got) != 0 {
		t.Fatalf("reservations left: %v", got)
	}
}
