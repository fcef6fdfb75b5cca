package hostdevice_test

import (
	"encoding/json"
	"net"
	"testing"

	"github.com/knit-cni/knit/internal/nstest"
	"github.com/knit-cni/knit/pkg/cni"
	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { nstest.Main(m) }

// lab is one test's host and container namespaces, plugin directory and
// state directories.
type lab struct {
	t        *testing.T
	host     string
	cont     string
	plugins  string
	stateDir string
	ipamDir  string
	network  string
	ifname   string
}

func newLab(t *testing.T) *lab {
	t.Helper()
	nstest.RequireRoot(t)
	host, cont := nstest.HostAndContainer(t, "hd")
	return &lab{t: t, host: host, cont: cont, plugins: nstest.Plugins(t), stateDir: t.TempDir(), ipamDir: t.TempDir(),
		network: "hdnet", ifname: "net1"}
}

// conf builds a host-device config with the lab's dataDir and the given
// keys (an "ipam" map gets the lab's IPAM data dir).
func (l *lab) conf(keys map[string]any) []byte {
	m := map[string]any{"cniVersion": "1.1.0", "name": l.network, "type": "host-device", "dataDir": l.stateDir}
	for k, v := range keys {
		m[k] = v
	}
	if ipam, ok := m["ipam"].(map[string]any); ok {
		ipam["dataDir"] = l.ipamDir
	}
	out, _ := json.Marshal(m)
	return out
}

func (l *lab) exec(cmd, id string, stdin []byte) nstest.PluginRun {
	l.t.Helper()
	env := map[string]string{"CNI_CONTAINERID": id, "CNI_NETNS": l.cont, "CNI_IFNAME": l.ifname}
	return nstest.Exec(l.t, l.host, l.plugins, "host-device", cmd, env, stdin)
}

func (l *lab) add(id string, stdin []byte) *cni.Result {
	l.t.Helper()
	r := l.exec("ADD", id, stdin)
	if r.ExitCode != 0 {
		l.t.Fatalf("ADD %s failed (exit %d): %s", id, r.ExitCode, r.Stdout)
	}
	res, err := cni.ParseResult(r.Stdout, "1.1.0")
	if err != nil {
		l.t.Fatalf("ADD printed an unparsable result: %v\n%s", err, r.Stdout)
	}
	return res
}

func (l *lab) ok(cmd, id string, stdin []byte) {
	l.t.Helper()
	if r := l.exec(cmd, id, stdin); r.ExitCode != 0 {
		l.t.Fatalf("%s %s failed (exit %d): %s", cmd, id, r.ExitCode, r.Stdout)
	}
}

func (l *lab) fails(cmd, id string, stdin []byte) *cni.Error {
	l.t.Helper()
	r := l.exec(cmd, id, stdin)
	if r.ExitCode == 0 {
		l.t.Fatalf("%s %s succeeded; want failure", cmd, id)
	}
	var e cni.Error
	if err := json.Unmarshal(r.Stdout, &e); err != nil {
		l.t.Fatalf("%s %s: error output is not a CNI error: %s", cmd, id, r.Stdout)
	}
	return &e
}

// withPrev adds prevResult to a config.
func withPrev(t *testing.T, stdin []byte, prev *cni.Result) []byte {
	t.Helper()
	var m map[string]any
	_ = json.Unmarshal(stdin, &m)
	enc, err := prev.Encode("1.1.0")
	if err != nil {
		t.Fatal(err)
	}
	m["prevResult"] = json.RawMessage(enc)
	out, _ := json.Marshal(m)
	return out
}

// device is a veth end standing in for a host NIC: name in the host
// namespace, its peer (the "switch port") in a namespace of its own.
type device struct {
	name string
	mac  string
	peer string // the peer namespace
}

// newDevice creates the "NIC" in the lab's host namespace with addresses,
// MTU and an alias, up, and its peer up in a third namespace with addr.
func (l *lab) newDevice(name string, mtu int, alias string, hostAddrs []string, peerAddr string) device {
	l.t.Helper()
	peerNS := nstest.New(l.t, "hdp")
	h := nstest.Handle(l.t, l.host)
	pfd, err := vnetns.GetFromPath(peerNS)
	if err != nil {
		l.t.Fatal(err)
	}
	defer pfd.Close()
	attrs := netlink.NewLinkAttrs()
	attrs.Name = name
	attrs.MTU = mtu
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: "port0", PeerNamespace: netlink.NsFd(int(pfd))}); err != nil {
		l.t.Fatalf("creating device veth: %v", err)
	}
	dl, err := h.LinkByName(name)
	if err != nil {
		l.t.Fatal(err)
	}
	if alias != "" {
		must(l.t, h.LinkSetAlias(dl, alias))
	}
	for _, a := range hostAddrs {
		addr, err := netlink.ParseAddr(a)
		if err != nil {
			l.t.Fatal(err)
		}
		if addr.IP.To4() == nil {
			addr.Flags = unix.IFA_F_NODAD
		}
		must(l.t, h.AddrAdd(dl, addr))
	}
	must(l.t, h.LinkSetUp(dl))
	ph := nstest.Handle(l.t, peerNS)
	pl, err := ph.LinkByName("port0")
	if err != nil {
		l.t.Fatal(err)
	}
	if peerAddr != "" {
		addr, _ := netlink.ParseAddr(peerAddr)
		must(l.t, ph.AddrAdd(pl, addr))
	}
	must(l.t, ph.LinkSetUp(pl))
	return device{name: name, mac: dl.Attrs().HardwareAddr.String(), peer: peerNS}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// linkByMAC finds a link by MAC in a namespace, or nil.
func linkByMAC(t *testing.T, nsPath, mac string) netlink.Link {
	t.Helper()
	links, err := nstest.Handle(t, nsPath).LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if l.Attrs().HardwareAddr.String() == mac {
			return l
		}
	}
	return nil
}

func mustIP(s string) net.IP { return net.ParseIP(s) }

// nsFd opens the namespace at path for the rest of the test.
func nsFd(t *testing.T, path string) int {
	t.Helper()
	fd, err := vnetns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fd.Close() })
	return int(fd)
}
