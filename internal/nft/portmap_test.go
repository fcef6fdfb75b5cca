package nft

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/knit-cni/knit/internal/netns"
	"github.com/knit-cni/knit/internal/probe"
	"github.com/knit-cni/knit/pkg/cni"
)

// pmLab is a host with a container (10.51.0.2, fd00:51::2) behind hv0 and
// a client (192.168.78.2, fd00:78::2) behind up0.
type pmLab struct {
	host, ctr, client string
	hostFD            int
	pm                *PortMap
}

func newPMLab(t *testing.T) *pmLab {
	t.Helper()
	hostPath, hostFD := testNS(t, "pmh")
	ctrPath, ctrFD := testNS(t, "pmc")
	cliPath, cliFD := testNS(t, "pmo")
	for _, fd := range []int{hostFD, ctrFD, cliFD} {
		setLoUp(t, fd)
	}
	veth(t, hostFD, ctrFD, "hv0", "eth0", []string{"10.51.0.1/24", "fd00:51::1/64"}, []string{"10.51.0.2/24", "fd00:51::2/64"})
	veth(t, hostFD, cliFD, "up0", "eth0", []string{"192.168.78.1/24", "fd00:78::1/64"}, []string{"192.168.78.2/24", "fd00:78::2/64"})
	route(t, ctrFD, "0.0.0.0/0", "10.51.0.1")
	route(t, ctrFD, "::/0", "fd00:51::1")
	route(t, cliFD, "0.0.0.0/0", "192.168.78.1")
	route(t, cliFD, "::/0", "fd00:78::1")
	must(t, netns.Do(hostPath, func() error {
		for k, v := range map[string]string{
			"ipv4/ip_forward":              "1",
			"ipv6/conf/all/forwarding":     "1",
			"ipv4/conf/hv0/route_localnet": "1",
		} {
			if err := os.WriteFile("/proc/sys/net/"+k, []byte(v), 0o644); err != nil {
				return err
			}
		}
		return nil
	}))
	pm := NewPortMap(WithNetNS(hostFD), WithLockFile(filepath.Join(t.TempDir(), "nft.lock")))
	t.Cleanup(func() { pm.Close() })
	return &pmLab{host: hostPath, ctr: ctrPath, client: cliPath, hostFD: hostFD, pm: pm}
}

func roundTrip(t *testing.T, ns, addr string) (string, error) {
	t.Helper()
	from, _, err := probe.TCPRoundTrip(ns, addr, 3*time.Second)
	return from, err
}

func TestPortMapTraffic(t *testing.T) {
	l := newPMLab(t)
	srv, err := probe.ListenTCP(l.ctr, "[::]:8080")
	must(t, err)
	t.Cleanup(func() { srv.Close() })

	o := Owner{Network: "pmnet", ContainerID: "ctr1", IfName: "eth0"}
	addrs := cidrs(t, "10.51.0.2/24", "fd00:51::2/64")
	maps := []PortMapping{{HostPort: 9090, ContainerPort: 8080, Protocol: "tcp"}}
	if _, err := roundTrip(t, l.client, "192.168.78.1:9090"); err == nil {
		t.Fatal("host port answers before any mapping (test topology broken)")
	}
	must(t, l.pm.Add(o, addrs, maps, PortMapOptions{SNAT: true}))
	must(t, l.pm.Check(o, addrs, maps, PortMapOptions{SNAT: true}))

	for _, tc := range []struct{ from, to, wantSeen string }{
		{l.client, "192.168.78.1:9090", "192.168.78.2"}, // client address kept
		{l.client, "[fd00:78::1]:9090", "fd00:78::2"},   // IPv6
		{l.host, "127.0.0.1:9090", "10.51.0.1"},         // localhost, masqueraded
		{l.host, "192.168.78.1:9090", "192.168.78.1"},   // host to its own address
		{l.ctr, "192.168.78.1:9090", "10.51.0.1"},       // hairpin, masqueraded
	} {
		seen, err := roundTrip(t, tc.from, tc.to)
		if err != nil {
			t.Errorf("%s via %s: %v", tc.to, filepath.Base(tc.from), err)
			continue
		}
		if seen != tc.wantSeen {
			t.Errorf("%s via %s: container saw %s, want %s", tc.to, filepath.Base(tc.from), seen, tc.wantSeen)
		}
	}
	// Transit traffic to another address on the same port is not caught.
	if _, err := roundTrip(t, l.client, "10.51.0.2:9090"); err == nil {
		t.Error("traffic to the container's own address on the host port was redirected")
	}

	entries, err := l.pm.List()
	must(t, err)
	if len(entries) != 2 || entries[0].Owner != o {
		t.Fatalf("List: %+v, want the tcp mapping in each family", entries)
	}

	// Another attachment cannot take the port.
	other := Owner{Network: "pmnet", ContainerID: "ctr2", IfName: "eth0"}
	err = l.pm.Add(other, cidrs(t, "10.51.0.3/24"), maps, PortMapOptions{SNAT: true})
	if err == nil || !strings.Contains(err.Error(), "already mapped") {
		t.Fatalf("second owner of the port: %v, want an 'already mapped' error", err)
	}

	must(t, l.pm.Del(o, addrs, maps))
	if _, err := roundTrip(t, l.client, "192.168.78.1:9090"); err == nil {
		t.Error("host port still answers after Del")
	}
	c := rawConn(t, l.hostFD)
	for _, f := range families {
		objs := pmObjectsFor(f)
		for _, s := range []string{objs.any.Name, objs.hostIP.Name, objs.snat.Name} {
			set, err := c.GetSetByName(f.table, s)
			must(t, err)
			if els, _ := c.GetSetElements(set); len(els) != 0 {
				t.Errorf("%s %s holds %d elements after Del", f.name, s, len(els))
			}
		}
	}
	if err := l.pm.Check(o, addrs, maps, PortMapOptions{SNAT: true}); err == nil {
		t.Error("Check passes after Del")
	}
}

func TestPortMapHostIPAndDelWithoutConfig(t *testing.T) {
	l := newPMLab(t)
	srv, err := probe.ListenTCP(l.ctr, "0.0.0.0:80")
	must(t, err)
	t.Cleanup(func() { srv.Close() })
	o := Owner{Network: "pmnet", ContainerID: "ctr1", IfName: "eth0"}
	addrs := cidrs(t, "10.51.0.2/24")
	maps := []PortMapping{{HostPort: 8000, ContainerPort: 80, Protocol: "tcp", HostIP: netip.MustParseAddr("192.168.78.1")}}
	must(t, l.pm.Add(o, addrs, maps, PortMapOptions{}))
	if _, err := roundTrip(t, l.client, "192.168.78.1:8000"); err != nil {
		t.Fatalf("mapped hostIP: %v", err)
	}
	if _, err := roundTrip(t, l.host, "10.51.0.1:8000"); err == nil {
		t.Error("another host address answers on a hostIP-specific mapping")
	}
	// IPv6 hostIP without an IPv6 container address is refused.
	bad := []PortMapping{{HostPort: 8001, ContainerPort: 80, Protocol: "tcp", HostIP: netip.MustParseAddr("fd00:78::1")}}
	var ce *cni.Error
	if err := l.pm.Add(o, addrs, bad, PortMapOptions{}); !errors.As(err, &ce) || ce.Code != cni.ErrInvalidNetworkConfig {
		t.Errorf("IPv6 hostIP for an IPv4-only container: %v, want code 7", err)
	}
	// DEL without mappings or addresses finds the entries by owner.
	must(t, l.pm.Del(o, nil, nil))
	if entries, _ := l.pm.List(); len(entries) != 0 {
		t.Errorf("entries left after Del: %+v", entries)
	}
	if _, err := roundTrip(t, l.client, "192.168.78.1:8000"); err == nil {
		t.Error("host port still answers after Del")
	}
}

func TestPortMapGC(t *testing.T) {
	l := newPMLab(t)
	keep := Owner{Network: "pmnet", ContainerID: "keep", IfName: "eth0"}
	gone := Owner{Network: "pmnet", ContainerID: "gone", IfName: "eth0"}
	foreign := Owner{Network: "othernet", ContainerID: "x", IfName: "eth0"}
	must(t, l.pm.Add(keep, cidrs(t, "10.51.0.2/24"), []PortMapping{{HostPort: 1000, ContainerPort: 80, Protocol: "tcp"}}, PortMapOptions{SNAT: true}))
	must(t, l.pm.Add(gone, cidrs(t, "10.51.0.3/24", "fd00:51::3/64"), []PortMapping{{HostPort: 1001, ContainerPort: 80, Protocol: "udp"}}, PortMapOptions{SNAT: true}))
	must(t, l.pm.Add(foreign, cidrs(t, "10.52.0.3/24"), []PortMapping{{HostPort: 1002, ContainerPort: 80, Protocol: "sctp"}}, PortMapOptions{MasqAll: true}))
	must(t, l.pm.GC("pmnet", []Owner{keep}))
	entries, err := l.pm.List()
	must(t, err)
	var owners []string
	for _, e := range entries {
		owners = append(owners, e.Owner.ContainerID)
	}
	if strings.Join(owners, ",") != "x,keep" { // sorted by owner: othernet/… first
		t.Fatalf("after GC owners %v, want keep and x", owners)
	}
	must(t, l.pm.Check(keep, cidrs(t, "10.51.0.2/24"), []PortMapping{{HostPort: 1000, ContainerPort: 80, Protocol: "tcp"}}, PortMapOptions{SNAT: true}))
	// With nothing kept anywhere the structure goes too.
	must(t, l.pm.GC("pmnet", nil))
	must(t, l.pm.GC("othernet", nil))
	c := rawConn(t, l.hostFD)
	for _, f := range families {
		if chains, _ := c.ListChainsOfTableFamily(f.table.Family); len(chains) != 0 {
			for _, ch := range chains {
				if ch.Table.Name == TableName && strings.HasPrefix(ch.Name, "pm-") {
					t.Errorf("chain %s %s left after GC of everything", f.name, ch.Name)
				}
			}
		}
	}
}

// A DEL whose mappings differ from the ADD's (here another container's)
// still removes everything the attachment owns, as the reference removes a
// container's chains whatever DEL names, and leaves the other owner's
// entries alone.
func TestPortMapDelWithOtherMappings(t *testing.T) {
	l := newPMLab(t)
	a := Owner{Network: "pmnet", ContainerID: "a", IfName: "eth0"}
	b := Owner{Network: "pmnet", ContainerID: "b", IfName: "eth0"}
	mapsA := []PortMapping{{HostPort: 2001, ContainerPort: 80, Protocol: "tcp"}, {HostPort: 2002, ContainerPort: 53, Protocol: "udp"}}
	mapsB := []PortMapping{{HostPort: 2003, ContainerPort: 80, Protocol: "tcp"}}
	must(t, l.pm.Add(a, cidrs(t, "10.51.0.2/24"), mapsA, PortMapOptions{SNAT: true}))
	must(t, l.pm.Add(b, cidrs(t, "10.51.0.3/24"), mapsB, PortMapOptions{SNAT: true}))
	must(t, l.pm.Del(a, cidrs(t, "10.51.0.2/24"), mapsB))
	entries, err := l.pm.List()
	must(t, err)
	if len(entries) != 1 || entries[0].Owner != b || entries[0].Mapping.HostPort != 2003 {
		t.Fatalf("after a's DEL naming b's mapping: %+v, want only b's 2003", entries)
	}
	must(t, l.pm.Check(b, cidrs(t, "10.51.0.3/24"), mapsB, PortMapOptions{SNAT: true}))
	if err := l.pm.Check(a, cidrs(t, "10.51.0.2/24"), mapsA, PortMapOptions{SNAT: true}); err == nil {
		t.Error("Check of a passes after its DEL")
	}
}

// Attachments with different subnet prefix lengths each get the masquerade
// rule of their length (and localhost's), recorded in pm-masq-lens; an
// earlier version's interval set pm-snat is removed when the structure is
// made again.
func TestPortMapMasqPrefixLengths(t *testing.T) {
	_, fd := testNS(t, "pml")
	c := rawConn(t, fd)
	c.AddTable(ipv4.table)
	old := &nftables.Set{Table: ipv4.table, Name: pmOldSNATSet, Interval: true, Concatenation: true,
		KeyType: nftables.MustConcatSetType(ipv4.keyType, ipv4.keyType)}
	oldSrc, oldCtr := netip.MustParsePrefix("10.53.0.0/20"), netip.MustParseAddr("10.53.0.9")
	must(t, c.AddSet(old, []nftables.SetElement{{
		Key:     append(oldSrc.Addr().AsSlice(), oldCtr.AsSlice()...),
		KeyEnd:  append(lastAddr(oldSrc).AsSlice(), oldCtr.AsSlice()...),
		Comment: "pmnet/old/eth0",
	}}))
	must(t, c.Flush())
	pm := NewPortMap(WithNetNS(fd), WithLockFile(filepath.Join(t.TempDir(), "nft.lock")))
	t.Cleanup(func() { pm.Close() })
	a := Owner{Network: "pmnet", ContainerID: "a", IfName: "eth0"}
	b := Owner{Network: "pmnet2", ContainerID: "b", IfName: "eth0"}
	mapsA := []PortMapping{{HostPort: 3001, ContainerPort: 80, Protocol: "tcp"}}
	mapsB := []PortMapping{{HostPort: 3002, ContainerPort: 80, Protocol: "tcp"}}
	must(t, pm.Add(a, cidrs(t, "10.51.0.2/24"), mapsA, PortMapOptions{SNAT: true}))
	must(t, pm.Add(b, cidrs(t, "10.52.0.2/16"), mapsB, PortMapOptions{SNAT: true}))
	if _, err := c.GetSetByName(ipv4.table, pmOldSNATSet); err == nil {
		t.Error("the earlier version's pm-snat set is still there")
	}
	objs := pmObjectsFor(ipv4)
	rules, err := dumpRules(c, ipv4.table, objs.chain(pmPostrouting))
	must(t, err)
	var lens []int
	for _, r := range rules {
		if l, ok := objs.ruleLen(r); ok {
			lens = append(lens, l)
		}
	}
	slices.Sort(lens)
	if fmt.Sprint(lens) != "[8 16 20 24]" {
		t.Fatalf("masquerade rules for prefix lengths %v, want [8 16 20 24] (20: the moved entry)", lens)
	}
	elems, err := c.GetSetElements(objs.lens)
	must(t, err)
	if len(elems) != 4 {
		t.Errorf("pm-masq-lens holds %d lengths, want 4", len(elems))
	}
	masq, err := c.GetSetElements(objs.snat)
	must(t, err)
	moved := false
	for _, e := range masq {
		moved = moved || string(e.Key) == string(snatKey(oldSrc, oldCtr)) && e.Comment == "pmnet/old/eth0"
	}
	if !moved {
		t.Errorf("the earlier set's entry was not moved to pm-masq: %d entries", len(masq))
	}
	must(t, pm.Check(a, cidrs(t, "10.51.0.2/24"), mapsA, PortMapOptions{SNAT: true}))
	must(t, pm.Check(b, cidrs(t, "10.52.0.2/16"), mapsB, PortMapOptions{SNAT: true}))
	// A lost rule is reported by CHECK.
	for _, r := range rules {
		if l, _ := objs.ruleLen(r); l == 16 {
			must(t, c.DelRule(r))
		}
	}
	must(t, c.Flush())
	if err := pm.Check(b, cidrs(t, "10.52.0.2/16"), mapsB, PortMapOptions{SNAT: true}); err == nil || !strings.Contains(err.Error(), "prefix length 16") {
		t.Errorf("Check without the /16 rule: %v", err)
	}
	must(t, pm.Check(a, cidrs(t, "10.51.0.2/24"), mapsA, PortMapOptions{SNAT: true}))
}
