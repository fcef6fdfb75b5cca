// Package linklab is the test bench of the single-link plugins (macvlan,
// ipvlan, vlan, dummy): a test-made "host" namespace with uplinks that
// stand in for the host's NICs — veth ends whose peers are ports of a
// bridge in a test-made "switch" namespace — container namespaces, and the
// built plugin binary run the way a runtime runs it. Everything is removed
// when the test ends. Only tests import it.
package linklab

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/knit-cni/knit/internal/nstest"
	"github.com/knit-cni/knit/internal/plugintest"
	"github.com/knit-cni/knit/pkg/cni"
	"github.com/vishvananda/netlink"
)

// Lab is one test's namespaces and plugin directory: the shared
// plugintest.Lab (host namespace, plugins, IPAM data dir, Reservations)
// with a switch for uplinks and calls that take CNI_ARGS and other types.
type Lab struct {
	*plugintest.Lab

	sw    string // the "switch" namespace, made on first Uplink
	ports int    // switch ports made so far
}

// New makes a lab for the plugin type typ.
func New(t *testing.T, typ string) *Lab {
	t.Helper()
	return &Lab{Lab: plugintest.NewLab(t, typ, "lh")}
}

// Container makes a container namespace and returns its path.
func (l *Lab) Container() string {
	l.T.Helper()
	return nstest.New(l.T, "lc")
}

// Uplink creates the link name in the host namespace: one end of a veth
// pair whose other end is a port of bridge "sw" in the switch namespace,
// both up, with the given MTU (0: kernel default). Everything plugged into
// uplinks of one lab shares that switch.
func (l *Lab) Uplink(name string, mtu int) netlink.Link {
	l.T.Helper()
	return l.UplinkIn(l.Host, name, mtu)
}

// UplinkIn is Uplink for any namespace the test made (e.g. a container,
// for linkInContainer).
func (l *Lab) UplinkIn(nsPath, name string, mtu int) netlink.Link {
	l.T.Helper()
	if l.sw == "" {
		l.sw = nstest.New(l.T, "ls")
		h := nstest.Handle(l.T, l.sw)
		attrs := netlink.NewLinkAttrs()
		attrs.Name = "sw"
		if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil {
			l.T.Fatalf("creating the switch bridge: %v", err)
		}
		br, _ := h.LinkByName("sw")
		if err := h.LinkSetUp(br); err != nil {
			l.T.Fatal(err)
		}
	}
	sh := nstest.Handle(l.T, l.sw)
	nh := nstest.Handle(l.T, nsPath)
	br, err := sh.LinkByName("sw")
	if err != nil {
		l.T.Fatal(err)
	}
	ns, err := os.Open(nsPath)
	if err != nil {
		l.T.Fatal(err)
	}
	defer ns.Close()
	l.ports++
	peer := fmt.Sprintf("swp%d", l.ports)
	attrs := netlink.NewLinkAttrs()
	attrs.Name = peer
	attrs.MTU = mtu
	attrs.MasterIndex = br.Attrs().Index
	v := &netlink.Veth{LinkAttrs: attrs, PeerName: name, PeerNamespace: netlink.NsFd(int(ns.Fd()))}
	if mtu > 0 {
		v.PeerMTU = uint32(mtu)
	}
	if err := sh.LinkAdd(v); err != nil {
		l.T.Fatalf("creating uplink %s: %v", name, err)
	}
	p, err := sh.LinkByName(peer)
	if err != nil {
		l.T.Fatal(err)
	}
	if err := sh.LinkSetUp(p); err != nil {
		l.T.Fatal(err)
	}
	up, err := nh.LinkByName(name)
	if err != nil {
		l.T.Fatal(err)
	}
	if err := nh.LinkSetUp(up); err != nil {
		l.T.Fatal(err)
	}
	return up
}

// Conf returns a plugin config: cniVersion 1.1.0, name, the lab's type,
// and keys; an "ipam" map of type host-local gets the lab's dataDir.
func (l *Lab) Conf(name string, keys map[string]any) []byte {
	l.T.Helper()
	m := map[string]any{"cniVersion": "1.1.0", "name": name, "type": l.Type}
	for k, v := range keys {
		m[k] = v
	}
	if ipam, ok := m["ipam"].(map[string]any); ok && ipam["type"] == "host-local" {
		if _, set := ipam["dataDir"]; !set {
			ipam["dataDir"] = l.DataDir
		}
	}
	out, err := json.Marshal(m)
	if err != nil {
		l.T.Fatal(err)
	}
	return out
}

// WithPrev returns conf with prevResult set to prev encoded in the
// config's cniVersion.
func WithPrev(t *testing.T, conf []byte, prev *cni.Result) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(conf, &m); err != nil {
		t.Fatal(err)
	}
	v, _ := m["cniVersion"].(string)
	enc, err := prev.Encode(v)
	if err != nil {
		t.Fatal(err)
	}
	m["prevResult"] = json.RawMessage(enc)
	out, _ := json.Marshal(m)
	return out
}

// Call is one plugin invocation.
type Call struct {
	Cmd, ID, Netns, IfName string
	Args                   string // CNI_ARGS
	Type                   string // "" for the lab's type
}

// Exec runs the plugin.
func (l *Lab) Exec(c Call, conf []byte) nstest.PluginRun {
	l.T.Helper()
	if c.IfName == "" {
		c.IfName = "eth0"
	}
	if c.Type == "" {
		c.Type = l.Type
	}
	env := map[string]string{"CNI_CONTAINERID": c.ID, "CNI_NETNS": c.Netns, "CNI_IFNAME": c.IfName}
	if c.Args != "" {
		env["CNI_ARGS"] = c.Args
	}
	return nstest.Exec(l.T, l.Host, l.Plugins, c.Type, c.Cmd, env, conf)
}

// Add runs ADD and returns the parsed result; the test fails on error.
func (l *Lab) Add(c Call, conf []byte) *cni.Result {
	l.T.Helper()
	c.Cmd = "ADD"
	r := l.Exec(c, conf)
	if r.ExitCode != 0 {
		l.T.Fatalf("%s ADD %s failed (exit %d): %s", l.typ(c), c.ID, r.ExitCode, r.Stdout)
	}
	var head struct {
		CNIVersion string `json:"cniVersion"`
	}
	_ = json.Unmarshal(r.Stdout, &head)
	res, err := cni.ParseResult(r.Stdout, head.CNIVersion)
	if err != nil {
		l.T.Fatalf("ADD %s printed an unparsable result: %v\n%s", c.ID, err, r.Stdout)
	}
	return res
}

// OK runs c.Cmd and fails the test unless it succeeds.
func (l *Lab) OK(c Call, conf []byte) {
	l.T.Helper()
	if r := l.Exec(c, conf); r.ExitCode != 0 {
		l.T.Fatalf("%s %s %s failed (exit %d): %s", l.typ(c), c.Cmd, c.ID, r.ExitCode, r.Stdout)
	}
}

// Fails runs c.Cmd, expects failure and returns the CNI error printed.
func (l *Lab) Fails(c Call, conf []byte) *cni.Error {
	l.T.Helper()
	r := l.Exec(c, conf)
	if r.ExitCode == 0 {
		l.T.Fatalf("%s %s %s succeeded; want failure\n%s", l.typ(c), c.Cmd, c.ID, r.Stdout)
	}
	var e cni.Error
	if err := json.Unmarshal(r.Stdout, &e); err != nil || e.Msg == "" {
		l.T.Fatalf("%s %s: error output is not a CNI error: %s", c.Cmd, c.ID, r.Stdout)
	}
	return &e
}

func (l *Lab) typ(c Call) string {
	if c.Type != "" {
		return c.Type
	}
	return l.Type
}

// Links lists the names of the links in the namespace.
func Links(t *testing.T, nsPath string) []string {
	t.Helper()
	ls, err := nstest.Handle(t, nsPath).LinkList()
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		t.Fatal(err)
	}
	var out []string
	for _, l := range ls {
		out = append(out, l.Attrs().Name)
	}
	return out
}
