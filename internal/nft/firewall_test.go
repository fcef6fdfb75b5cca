package nft

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/knit-cni/knit/internal/netns"
	"github.com/knit-cni/knit/internal/probe"
)

// TestFirewallIsolation routes between two "bridges" (veths named like
// bridges: isolation works on interface names) through one host: traffic
// flows until both are isolated, and again once GC drops one network.
func TestFirewallIsolation(t *testing.T) {
	hostPath, hostFD := testNS(t, "fwh")
	aPath, aFD := testNS(t, "fwa")
	bPath, bFD := testNS(t, "fwb")
	for _, fd := range []int{hostFD, aFD, bFD} {
		setLoUp(t, fd)
	}
	veth(t, hostFD, aFD, "kbr-a", "eth0", []string{"10.53.1.1/24"}, []string{"10.53.1.2/24"})
	veth(t, hostFD, bFD, "kbr-b", "eth0", []string{"10.53.2.1/24"}, []string{"10.53.2.2/24"})
	route(t, aFD, "0.0.0.0/0", "10.53.1.1")
	route(t, bFD, "0.0.0.0/0", "10.53.2.1")
	must(t, netns.Do(hostPath, func() error { return writeSysctl("ipv4/ip_forward", "1") }))
	srv, err := probe.ListenTCP(bPath, "0.0.0.0:7000")
	must(t, err)
	t.Cleanup(func() { srv.Close() })
	reach := func() bool {
		_, _, err := probe.TCPRoundTrip(aPath, "10.53.2.2:7000", 2*time.Second)
		return err == nil
	}
	if !reach() {
		t.Fatal("a cannot reach b before any firewall (test topology broken)")
	}
	fw := NewFirewall(WithNetNS(hostFD), WithLockFile(filepath.Join(t.TempDir(), "nft.lock")))
	defer fw.Close()
	oa := Owner{Network: "neta", ContainerID: "a", IfName: "eth0"}
	ob := Owner{Network: "netb", ContainerID: "b", IfName: "eth0"}
	must(t, fw.Add(oa, cidrs(t, "10.53.1.2/24"), "kbr-a"))
	if !reach() {
		t.Fatal("one isolated bridge alone blocks traffic to an open one")
	}
	must(t, fw.Add(ob, cidrs(t, "10.53.2.2/24"), "kbr-b"))
	if reach() {
		t.Fatal("two isolated bridges reach each other")
	}
	must(t, fw.Check(oa, cidrs(t, "10.53.1.2/24"), "kbr-a"))
	must(t, fw.Check(ob, cidrs(t, "10.53.2.2/24"), "kbr-b"))
	// DEL keeps the bridge isolated (other containers may use it).
	must(t, fw.Del(ob, cidrs(t, "10.53.2.2/24")))
	if err := fw.Check(ob, cidrs(t, "10.53.2.2/24"), "kbr-b"); err == nil {
		t.Error("Check passes after Del")
	}
	if reach() {
		t.Fatal("DEL lifted the isolation of a bridge")
	}
	// GC of netb with nothing kept drops its bridge: traffic flows again.
	must(t, fw.GC("netb", nil))
	if !reach() {
		t.Fatal("GC of a network without attachments left its bridge isolated")
	}
	must(t, fw.GC("neta", nil))
	c := rawConn(t, hostFD)
	for _, f := range families {
		if _, err := c.GetSetByName(f.table, fwCtrs); err == nil {
			t.Errorf("%s set %s left after GC of everything", f.name, fwCtrs)
		}
	}
}

// writeSysctl sets /proc/sys/net/<key> in the calling thread's namespace.
func writeSysctl(key, value string) error {
	return os.WriteFile("/proc/sys/net/"+key, []byte(value), 0o644)
}
