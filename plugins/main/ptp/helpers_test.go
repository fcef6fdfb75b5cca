package ptp_test

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/knit-cni/knit/internal/netns"
	"github.com/knit-cni/knit/internal/nft"
	"github.com/knit-cni/knit/internal/nstest"
	"github.com/knit-cni/knit/internal/probe"
	"github.com/knit-cni/knit/pkg/cni"
	vnetns "github.com/vishvananda/netns"
)

func TestMain(m *testing.M) { nstest.Main(m) }

// lab is one test's host namespace, plugin directory and IPAM data dir.
type lab struct {
	t       *testing.T
	host    string
	plugins string
	dataDir string
}

func newLab(t *testing.T) *lab {
	t.Helper()
	nstest.RequireRoot(t)
	return &lab{t: t, host: nstest.New(t, "ph"), plugins: nstest.Plugins(t), dataDir: t.TempDir()}
}

// conf reads a testdata config and returns it with ipam.dataDir pointed at
// the lab's directory, cniVersion set when version is not "", and any
// further top-level keys from extra.
func (l *lab) conf(file, version string, extra map[string]any) []byte {
	l.t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		l.t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		l.t.Fatal(err)
	}
	if ipam, ok := m["ipam"].(map[string]any); ok {
		ipam["dataDir"] = l.dataDir
	}
	if version != "" {
		m["cniVersion"] = version
	}
	for k, v := range extra {
		m[k] = v
	}
	out, _ := json.Marshal(m)
	return out
}

func (l *lab) exec(cmd, id, nsPath, ifname string, stdin []byte) nstest.PluginRun {
	l.t.Helper()
	env := map[string]string{"CNI_CONTAINERID": id, "CNI_NETNS": nsPath, "CNI_IFNAME": ifname}
	return nstest.Exec(l.t, l.host, l.plugins, "ptp", cmd, env, stdin)
}

// add runs ADD and returns the parsed result, failing the test on error.
func (l *lab) add(id, nsPath string, stdin []byte) *cni.Result {
	l.t.Helper()
	r := l.exec("ADD", id, nsPath, "eth0", stdin)
	if r.ExitCode != 0 {
		l.t.Fatalf("ADD %s failed (exit %d): %s", id, r.ExitCode, r.Stdout)
	}
	var head struct {
		CNIVersion string `json:"cniVersion"`
	}
	_ = json.Unmarshal(r.Stdout, &head)
	res, err := cni.ParseResult(r.Stdout, head.CNIVersion)
	if err != nil {
		l.t.Fatalf("ADD %s printed an unparsable result: %v\n%s", id, err, r.Stdout)
	}
	return res
}

// ok runs cmd and fails the test unless it succeeds.
func (l *lab) ok(cmd, id, nsPath string, stdin []byte) {
	l.t.Helper()
	if r := l.exec(cmd, id, nsPath, "eth0", stdin); r.ExitCode != 0 {
		l.t.Fatalf("%s %s failed (exit %d): %s", cmd, id, r.ExitCode, r.Stdout)
	}
}

// fails runs cmd, expects failure and returns the CNI error printed.
func (l *lab) fails(cmd, id, nsPath string, stdin []byte) *cni.Error {
	l.t.Helper()
	r := l.exec(cmd, id, nsPath, "eth0", stdin)
	if r.ExitCode == 0 {
		l.t.Fatalf("%s %s succeeded; want failure", cmd, id)
	}
	var e cni.Error
	if err := json.Unmarshal(r.Stdout, &e); err != nil {
		l.t.Fatalf("%s %s: error output is not a CNI error: %s", cmd, id, r.Stdout)
	}
	return &e
}

// withCNIVersion replaces the config's cniVersion and adds a prevResult.
func withPrev(t *testing.T, stdin []byte, prev *cni.Result, version string) []byte {
	t.Helper()
	var m map[string]any
	_ = json.Unmarshal(stdin, &m)
	enc, err := prev.Encode(version)
	if err != nil {
		t.Fatal(err)
	}
	m["prevResult"] = json.RawMessage(enc)
	out, _ := json.Marshal(m)
	return out
}

// masqEntries lists the network's masquerade entries in the lab's host.
func (l *lab) masqEntries(network string) []nft.Entry {
	l.t.Helper()
	h, err := vnetns.GetFromPath(l.host)
	if err != nil {
		l.t.Fatal(err)
	}
	defer h.Close()
	es, err := nft.NewMasq(nft.WithNetNS(int(h))).List(network)
	if err != nil {
		l.t.Fatalf("listing masquerade entries: %v", err)
	}
	return es
}

// reservations lists the IPs host-local holds for network.
func (l *lab) reservations(network string) []string {
	l.t.Helper()
	ents, err := os.ReadDir(filepath.Join(l.dataDir, network))
	if err != nil && !os.IsNotExist(err) {
		l.t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if net.ParseIP(strings.ReplaceAll(e.Name(), "_", ":")) != nil {
			out = append(out, e.Name())
		}
	}
	return out
}

func ping(t *testing.T, from string, to net.IP) {
	t.Helper()
	if _, err := probe.Ping(from, to, 3*time.Second); err != nil {
		t.Fatalf("ping %s from %s: %v", to, from, err)
	}
}

func firstIP(t *testing.T, r *cni.Result, v4 bool) *cni.IPConfig {
	t.Helper()
	for _, ip := range r.IPs {
		if ip.IsV4() == v4 {
			return ip
		}
	}
	t.Fatalf("result has no IPv%s address: %+v", map[bool]string{true: "4", false: "6"}[v4], r.IPs)
	return nil
}

func mustCIDR(s string) *net.IPNet {
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(fmt.Sprint(err))
	}
	return n
}

func deleteNetns(path string) error { return netns.DeletePath(path) }

// removeMasq deletes an attachment's masquerade entry directly, as damage.
func removeMasq(t *testing.T, l *lab, id string, addr net.IPNet) {
	t.Helper()
	h, err := vnetns.GetFromPath(l.host)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	o := nft.Owner{Network: ptpNet, ContainerID: id, IfName: "eth0"}
	if err := nft.NewMasq(nft.WithNetNS(int(h))).Del(o, []net.IPNet{addr}); err != nil {
		t.Fatal(err)
	}
}
