package dhcpd

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"

	"github.com/knit-cni/knit/internal/dhcpd/api"
)

func ack(t *testing.T, opts ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	base := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(dhcpv4.MessageTypeAck),
		dhcpv4.WithYourIP(net.IPv4(10, 9, 8, 7)),
		dhcpv4.WithNetmask(net.CIDRMask(22, 32)),
		dhcpv4.WithRouter(net.IPv4(10, 9, 8, 1)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 9, 8, 1))),
	}
	m, err := dhcpv4.New(append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestSchedule(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name          string
		opts          []dhcpv4.Modifier
		t1, t2, total time.Duration
	}{
		{"defaults from the lease time", []dhcpv4.Modifier{dhcpv4.WithLeaseTime(800)}, 400 * time.Second, 700 * time.Second, 800 * time.Second},
		{"server's T1/T2", []dhcpv4.Modifier{dhcpv4.WithLeaseTime(120), dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(60 * time.Second)), dhcpv4.WithOption(dhcpv4.OptRebindingTimeValue(105 * time.Second))},
			60 * time.Second, 105 * time.Second, 120 * time.Second},
		{"nonsense T2 < T1 falls back", []dhcpv4.Modifier{dhcpv4.WithLeaseTime(100), dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(80 * time.Second)), dhcpv4.WithOption(dhcpv4.OptRebindingTimeValue(10 * time.Second))},
			80 * time.Second, 87500 * time.Millisecond, 100 * time.Second},
		{"no lease time: an hour", nil, 30 * time.Minute, 52*time.Minute + 30*time.Second, time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := &lease{}
			a := ack(t, tc.opts...)
			l.setLease(&nclient4.Lease{Offer: a, ACK: a, CreationTime: at})
			if l.rec.Renew != at.Add(tc.t1) || l.rec.Rebind != at.Add(tc.t2) || l.rec.Expiry != at.Add(tc.total) {
				t.Fatalf("T1 %v T2 %v expiry %v; want %v %v %v", l.rec.Renew.Sub(at), l.rec.Rebind.Sub(at), l.rec.Expiry.Sub(at), tc.t1, tc.t2, tc.total)
			}
			if l.rec.Address != "10.9.8.7" {
				t.Fatalf("address %s", l.rec.Address)
			}
		})
	}
}

func TestResult(t *testing.T) {
	r := resultOf(ack(t, dhcpv4.WithDNS(net.IPv4(10, 9, 8, 53))), 50)
	if r.IPs[0].Address.String() != "10.9.8.7/22" || r.IPs[0].Gateway.String() != "10.9.8.1" {
		t.Fatalf("ip %v", r.IPs[0])
	}
	if len(r.Routes) != 1 || r.Routes[0].Dst.String() != "0.0.0.0/0" || r.Routes[0].GW.String() != "10.9.8.1" || r.Routes[0].Priority != 50 {
		t.Fatalf("routes %v", r.Routes)
	}
	if r.DNS.Nameservers[0] != "10.9.8.53" {
		t.Fatalf("dns %+v", r.DNS)
	}
	// Classless static routes replace the router's default route (RFC 3442).
	_, dst, _ := net.ParseCIDR("192.168.0.0/16")
	_, def, _ := net.ParseCIDR("0.0.0.0/0")
	r = resultOf(ack(t, dhcpv4.WithOption(dhcpv4.OptClasslessStaticRoute(
		&dhcpv4.Route{Dest: dst, Router: net.IPv4(10, 9, 8, 254)},
		&dhcpv4.Route{Dest: def, Router: net.IPv4(10, 9, 8, 2)},
	))), 0)
	if len(r.Routes) != 2 || r.Routes[0].GW.String() != "10.9.8.254" || r.Routes[1].Dst.String() != "0.0.0.0/0" || r.Routes[1].GW.String() != "10.9.8.2" {
		t.Fatalf("classless routes %v", r.Routes)
	}
	// Option 33: classful static routes plus the router's default route;
	// the illegal default destination, a multicast one and a partial pair
	// are skipped.
	opt33 := []byte{10, 20, 0, 0, 10, 9, 8, 3, 0, 0, 0, 0, 10, 9, 8, 4, 224, 1, 0, 0, 10, 9, 8, 6, 172, 16, 5, 0, 10, 9, 8, 5, 192, 168}
	r = resultOf(ack(t, dhcpv4.WithGeneric(dhcpv4.OptionStaticRoutingTable, opt33)), 0)
	var got []string
	for _, rt := range r.Routes {
		got = append(got, rt.Dst.String()+" via "+rt.GW.String())
	}
	if want := "10.0.0.0/8 via 10.9.8.3, 172.16.0.0/16 via 10.9.8.5, 0.0.0.0/0 via 10.9.8.1"; strings.Join(got, ", ") != want {
		t.Fatalf("option 33 routes %q, want %q", strings.Join(got, ", "), want)
	}
	// With classless routes present, option 33 is ignored (RFC 3442).
	r = resultOf(ack(t, dhcpv4.WithGeneric(dhcpv4.OptionStaticRoutingTable, opt33), dhcpv4.WithOption(dhcpv4.OptClasslessStaticRoute(
		&dhcpv4.Route{Dest: dst, Router: net.IPv4(10, 9, 8, 254)}))), 0)
	if len(r.Routes) != 1 || r.Routes[0].Dst.String() != "192.168.0.0/16" {
		t.Fatalf("classless and option 33 routes %v", r.Routes)
	}
}

// Lease files round-trip; a corrupt file is moved aside, a dead save's
// temporary file removed, and neither blocks loading.
func TestPersistence(t *testing.T) {
	dir := t.TempDir()
	d, err := New(Config{StateDir: dir, SocketPath: filepath.Join(dir, "s")})
	if err != nil {
		t.Fatal(err)
	}
	a := ack(t, dhcpv4.WithLeaseTime(600))
	l := &lease{rec: record{Lease: api.Lease{Key: api.Key{ContainerID: "c", Network: "n", IfName: "eth0"}, Netns: "/proc/self/ns/net"}}}
	l.setLease(&nclient4.Lease{Offer: a, ACK: a, CreationTime: time.Now()})
	if err := d.save(l); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "garbage.json"), []byte("{not json"), 0o600)
	os.WriteFile(filepath.Join(dir, ".tmp-123"), []byte("half"), 0o600)
	got, err := d.load()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].rec.Key != l.rec.Key || got[0].cur.ACK.YourIPAddr.String() != "10.9.8.7" || !got[0].rec.Expiry.Equal(l.rec.Expiry) {
		t.Fatalf("loaded %+v", got)
	}
	var names []string
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != fileName(l.rec.Key)+" garbage.json.bad" {
		t.Fatalf("state dir after load: %v", names)
	}
	d.remove(l.rec.Key)
	if _, err := os.Stat(filepath.Join(dir, fileName(l.rec.Key))); !os.IsNotExist(err) {
		t.Fatal("remove left the file")
	}
}

func TestKeyAndOptions(t *testing.T) {
	k := api.Key{ContainerID: strings.Repeat("x", 300), Network: "n", IfName: "eth0"}
	if len(k.String()) != 254 {
		t.Fatalf("client id of %d bytes", len(k.String()))
	}
	for name, want := range map[string]uint8{"host-name": 12, "Routers": 3, "classless-static-routes": 121, "250": 250} {
		if c, err := api.OptionCode(name); err != nil || c != want {
			t.Errorf("OptionCode(%q) = %d, %v", name, c, err)
		}
	}
	for _, bad := range []string{"", "0", "255", "no-such-option"} {
		if _, err := api.OptionCode(bad); err == nil {
			t.Errorf("OptionCode(%q) accepted", bad)
		}
	}
	// The client id and provided options reach the packet.
	l := &api.Lease{Key: api.Key{ContainerID: "c", Network: "n", IfName: "eth0"},
		Provide: []api.Option{{Code: 12, Value: []byte("web")}}, Request: []int{26}}
	m, err := dhcpv4.NewDiscovery(net.HardwareAddr{2, 0, 0, 0, 0, 1}, modifiers(l)...)
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Options.Get(dhcpv4.OptionClientIdentifier)) != "\x00c/n/eth0" || m.HostName() != "web" ||
		!m.ParameterRequestList().Has(dhcpv4.OptionInterfaceMTU) || !m.ParameterRequestList().Has(dhcpv4.OptionClasslessStaticRoute) {
		t.Fatalf("discover: %s", m.Summary())
	}
	l.SkipDefault = true
	l.Provide = append(l.Provide, api.Option{Code: 61, Value: []byte("mine")})
	m, _ = dhcpv4.NewDiscovery(net.HardwareAddr{2, 0, 0, 0, 0, 1}, modifiers(l)...)
	if string(m.Options.Get(dhcpv4.OptionClientIdentifier)) != "mine" || m.ParameterRequestList().Has(dhcpv4.OptionClasslessStaticRoute) {
		t.Fatalf("discover with provided client id and skipDefault: %s", m.Summary())
	}
}
