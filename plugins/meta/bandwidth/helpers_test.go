package bandwidth

import (
	"encoding/json"
	"fmt"
	"net"
	"testing"

	"github.com/knit-cni/knit/internal/link"
	"github.com/knit-cni/knit/internal/nstest"
	"github.com/knit-cni/knit/pkg/cni"
	"github.com/vishvananda/netlink"
)

func TestMain(m *testing.M) { nstest.Main(m) }

// lab is one test's host and container namespaces joined by a veth
// (eth0 in the container), addressed 10.77.0.1/24 (host) and .2 (container).
type lab struct {
	t         *testing.T
	host      string
	cont      string
	plugins   string
	hostVeth  string
	prev      *cni.Result
	hostIP    net.IP
	contIP    net.IP
	container string // CNI_CONTAINERID
}

func newLab(t *testing.T, pluginDir string) *lab {
	t.Helper()
	nstest.RequireRoot(t)
	l := &lab{t: t, plugins: pluginDir, container: nstest.UniqueName("bw")}
	l.host, l.cont = nstest.HostAndContainer(t, "bw")
	l.hostIP, l.contIP = net.IPv4(10, 77, 0, 1).To4(), net.IPv4(10, 77, 0, 2).To4()
	host, err := link.Open(l.host)
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	cont, err := link.Open(l.cont)
	if err != nil {
		t.Fatal(err)
	}
	defer cont.Close()
	pair, err := link.CreateVeth(host, cont, link.Veth{ContainerName: "eth0", HostUp: true})
	if err != nil {
		t.Fatal(err)
	}
	l.hostVeth = pair.Host.Attrs().Name
	mask := net.CIDRMask(24, 32)
	if err := host.Handle.AddrAdd(pair.Host, &netlink.Addr{IPNet: &net.IPNet{IP: l.hostIP, Mask: mask}}); err != nil {
		t.Fatal(err)
	}
	if err := cont.Handle.AddrAdd(pair.Container, &netlink.Addr{IPNet: &net.IPNet{IP: l.contIP, Mask: mask}}); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []*link.Namespace{cont} {
		lo, _ := ns.Handle.LinkByName("lo")
		_ = ns.Handle.LinkSetUp(lo)
	}
	if err := cont.Handle.LinkSetUp(pair.Container); err != nil {
		t.Fatal(err)
	}
	l.prev = &cni.Result{
		CNIVersion: "1.0.0",
		Interfaces: []*cni.Interface{
			{Name: l.hostVeth, Mac: pair.Host.Attrs().HardwareAddr.String()},
			{Name: "eth0", Mac: pair.Container.Attrs().HardwareAddr.String(), Sandbox: l.cont},
		},
		IPs: []*cni.IPConfig{{Interface: cni.Int(1), Address: net.IPNet{IP: l.contIP, Mask: mask}, Gateway: l.hostIP}},
	}
	return l
}

// conf is a bandwidth config for network "bwnet" with the given extra keys
// and the lab's prevResult.
func (l *lab) conf(extra map[string]any) []byte {
	l.t.Helper()
	prev, err := l.prev.Encode("1.0.0")
	if err != nil {
		l.t.Fatal(err)
	}
	m := map[string]any{"cniVersion": "1.0.0", "name": "bwnet", "type": "bandwidth", "prevResult": json.RawMessage(prev)}
	for k, v := range extra {
		m[k] = v
	}
	out, _ := json.Marshal(m)
	return out
}

func (l *lab) exec(typ, cmd string, stdin []byte) nstest.PluginRun {
	l.t.Helper()
	env := map[string]string{"CNI_CONTAINERID": l.container, "CNI_NETNS": l.cont, "CNI_IFNAME": "eth0"}
	return nstest.Exec(l.t, l.host, l.plugins, typ, cmd, env, stdin)
}

// mustRun runs cmd with the knit plugin and fails the test unless it
// succeeds.
func (l *lab) mustRun(cmd string, stdin []byte) []byte {
	l.t.Helper()
	r := l.exec("bandwidth", cmd, stdin)
	if r.ExitCode != 0 {
		l.t.Fatalf("%s failed (exit %d): %s", cmd, r.ExitCode, r.Stdout)
	}
	return r.Stdout
}

// handle returns a netlink handle in the lab's host namespace.
func (l *lab) handle() *netlink.Handle { return nstest.Handle(l.t, l.host) }

// qdiscs describes the host veth's (or another host link's) qdiscs.
func (l *lab) qdiscs(name string) []netlink.Qdisc {
	l.t.Helper()
	h := l.handle()
	lk, err := h.LinkByName(name)
	if err != nil {
		l.t.Fatalf("link %s: %v", name, err)
	}
	qs, err := h.QdiscList(lk)
	if err != nil {
		l.t.Fatal(err)
	}
	return qs
}

func hasQdisc(qs []netlink.Qdisc, typ string) bool {
	for _, q := range qs {
		if q.Type() == typ {
			return true
		}
	}
	return false
}

func describe(qs []netlink.Qdisc) string {
	s := ""
	for _, q := range qs {
		s += fmt.Sprintf("[%s %s parent %s] ", q.Type(), netlink.HandleStr(q.Attrs().Handle), netlink.HandleStr(q.Attrs().Parent))
	}
	return s
}
