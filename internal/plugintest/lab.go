// Package plugintest is the shared bench of the main plugins' integration
// tests: a Lab is one test's host namespace, plugin directory and IPAM data
// dir, with helpers to run a plugin verb inside the host namespace, parse
// its result or error, and inspect masquerade entries and IPAM reservations.
package plugintest

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/knit-cni/knit/internal/nft"
	"github.com/knit-cni/knit/internal/nstest"
	"github.com/knit-cni/knit/internal/probe"
	"github.com/knit-cni/knit/pkg/cni"
	vnetns "github.com/vishvananda/netns"
)

// Lab is one test's host namespace, plugin directory and IPAM data dir.
type Lab struct {
	T       *testing.T
	Host    string // the test host namespace, where the plugin runs
	Plugins string // CNI_PATH: the built plugin links
	DataDir string // host-local dataDir
	Type    string // the plugin type under test
}

// NewLab makes a lab for plugin type typ with a fresh host namespace named
// with prefix, the built plugins and a temporary IPAM data dir.
func NewLab(t *testing.T, typ, prefix string) *Lab {
	t.Helper()
	nstest.RequireRoot(t)
	return &Lab{T: t, Host: nstest.New(t, prefix), Plugins: nstest.Plugins(t), DataDir: t.TempDir(), Type: typ}
}

// Conf reads a testdata config and returns it with ipam.dataDir pointed at
// the lab's directory, cniVersion set when version is not "", and any
// further top-level keys from extra.
func (l *Lab) Conf(file, version string, extra map[string]any) []byte {
	l.T.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		l.T.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		l.T.Fatal(err)
	}
	if ipam, ok := m["ipam"].(map[string]any); ok {
		ipam["dataDir"] = l.DataDir
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

func (l *Lab) Exec(cmd, id, nsPath, ifname string, stdin []byte) nstest.PluginRun {
	l.T.Helper()
	env := map[string]string{"CNI_CONTAINERID": id, "CNI_NETNS": nsPath, "CNI_IFNAME": ifname}
	return nstest.Exec(l.T, l.Host, l.Plugins, l.Type, cmd, env, stdin)
}

// Add runs ADD and returns the parsed result, failing the test on error.
func (l *Lab) Add(id, nsPath string, stdin []byte) *cni.Result {
	l.T.Helper()
	r := l.Exec("ADD", id, nsPath, "eth0", stdin)
	if r.ExitCode != 0 {
		l.T.Fatalf("ADD %s failed (exit %d): %s", id, r.ExitCode, r.Stdout)
	}
	var head struct {
		CNIVersion string `json:"cniVersion"`
	}
	_ = json.Unmarshal(r.Stdout, &head)
	res, err := cni.ParseResult(r.Stdout, head.CNIVersion)
	if err != nil {
		l.T.Fatalf("ADD %s printed an unparsable result: %v\n%s", id, err, r.Stdout)
	}
	return res
}

// OK runs cmd and fails the test unless it succeeds.
func (l *Lab) OK(cmd, id, nsPath string, stdin []byte) {
	l.T.Helper()
	if r := l.Exec(cmd, id, nsPath, "eth0", stdin); r.ExitCode != 0 {
		l.T.Fatalf("%s %s failed (exit %d): %s", cmd, id, r.ExitCode, r.Stdout)
	}
}

// Fails runs cmd, expects failure and returns the CNI error printed.
func (l *Lab) Fails(cmd, id, nsPath string, stdin []byte) *cni.Error {
	l.T.Helper()
	r := l.Exec(cmd, id, nsPath, "eth0", stdin)
	if r.ExitCode == 0 {
		l.T.Fatalf("%s %s succeeded; want failure", cmd, id)
	}
	var e cni.Error
	if err := json.Unmarshal(r.Stdout, &e); err != nil {
		l.T.Fatalf("%s %s: error output is not a CNI error: %s", cmd, id, r.Stdout)
	}
	return &e
}

// WithPrev returns the config with prevResult set to prev encoded in version.
func WithPrev(t *testing.T, stdin []byte, prev *cni.Result, version string) []byte {
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

// MasqEntries lists the network's masquerade entries in the lab's host.
func (l *Lab) MasqEntries(network string) []nft.Entry {
	l.T.Helper()
	h, err := vnetns.GetFromPath(l.Host)
	if err != nil {
		l.T.Fatal(err)
	}
	defer h.Close()
	es, err := nft.NewMasq(nft.WithNetNS(int(h))).List(network)
	if err != nil {
		l.T.Fatalf("listing masquerade entries: %v", err)
	}
	return es
}

// Reservations lists the IPs host-local holds for network.
func (l *Lab) Reservations(network string) []string {
	l.T.Helper()
	ents, err := os.ReadDir(filepath.Join(l.DataDir, network))
	if err != nil && !os.IsNotExist(err) {
		l.T.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if net.ParseIP(strings.ReplaceAll(e.Name(), "_", ":")) != nil {
			out = append(out, e.Name())
		}
	}
	return out
}

// Ping fails the test unless from reaches to by ICMP.
func Ping(t *testing.T, from string, to net.IP) {
	t.Helper()
	if _, err := probe.Ping(from, to, 3*time.Second); err != nil {
		t.Fatalf("ping %s from %s: %v", to, from, err)
	}
}

// FirstIP returns the result's first IPv4 (v4) or IPv6 address.
func FirstIP(t *testing.T, r *cni.Result, v4 bool) *cni.IPConfig {
	t.Helper()
	for _, ip := range r.IPs {
		if ip.IsV4() == v4 {
			return ip
		}
	}
	t.Fatalf("result has no IPv%s address: %+v", map[bool]string{true: "4", false: "6"}[v4], r.IPs)
	return nil
}

// MustCIDR parses a CIDR or panics.
func MustCIDR(s string) *net.IPNet {
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(fmt.Sprint(err))
	}
	return n
}

// RemoveMasq deletes an attachment's masquerade entry directly, as damage.
func (l *Lab) RemoveMasq(network, id string, addr net.IPNet) {
	t := l.T
	t.Helper()
	h, err := vnetns.GetFromPath(l.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	o := nft.Owner{Network: network, ContainerID: id, IfName: "eth0"}
	if err := nft.NewMasq(nft.WithNetNS(int(h))).Del(o, []net.IPNet{addr}); err != nil {
		t.Fatal(err)
	}
}
