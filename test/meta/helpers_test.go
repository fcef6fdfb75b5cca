package meta

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/knit-cni/knit/internal/netns"
	"github.com/knit-cni/knit/internal/nstest"
	"github.com/knit-cni/knit/pkg/cni"
	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { nstest.Main(m) }

// lab is one test's host namespace, a client namespace wired to it
// (192.168.90.2 -> host 192.168.90.1), knit's plugins and the reference
// cnitool on a PATH holding nothing else.
type lab struct {
	t                *testing.T
	host, client     string
	plugins, toolDir string
	confDir, dataDir string
}

const hostAddr = "192.168.90.1"

func newLab(t *testing.T) *lab {
	t.Helper()
	nstest.RequireRoot(t)
	l := &lab{t: t, host: nstest.New(t, "mh"), client: nstest.New(t, "mo"), plugins: nstest.Plugins(t),
		toolDir: t.TempDir(), confDir: t.TempDir(), dataDir: t.TempDir()}
	l.installCnitool()
	for _, bin := range []string{"iptables", "nft", "tc", "ip", "conntrack"} {
		for _, dir := range []string{l.toolDir, l.plugins} {
			if _, err := os.Stat(filepath.Join(dir, bin)); err == nil {
				t.Fatalf("%s found in %s", bin, dir)
			}
		}
	}
	hh, ch := nstest.Handle(t, l.host), nstest.Handle(t, l.client)
	cfd, err := vnetns.GetFromPath(l.client)
	if err != nil {
		t.Fatal(err)
	}
	defer cfd.Close()
	if err := hh.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "up0"}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(cfd))}); err != nil {
		t.Fatal(err)
	}
	for _, side := range []struct {
		h          *netlink.Handle
		name, cidr string
	}{{hh, "up0", hostAddr + "/24"}, {ch, "eth0", "192.168.90.2/24"}, {hh, "lo", "127.0.0.1/8"}, {ch, "lo", "127.0.0.1/8"}} {
		lk, err := side.h.LinkByName(side.name)
		if err != nil {
			t.Fatal(err)
		}
		if side.name != "lo" {
			a, _ := netlink.ParseAddr(side.cidr)
			a.Flags = unix.IFA_F_NODAD
			if err := side.h.AddrAdd(lk, a); err != nil {
				t.Fatal(err)
			}
		}
		if err := side.h.LinkSetUp(lk); err != nil {
			t.Fatal(err)
		}
	}
	if err := ch.RouteAdd(&netlink.Route{Dst: &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}, Gw: net.ParseIP(hostAddr)}); err != nil {
		t.Fatal(err)
	}
	return l
}

// installCnitool puts the reference cnitool (prebuilt, or built from the
// containernetworking module) in the tool directory.
func (l *lab) installCnitool() {
	dst := filepath.Join(l.toolDir, "cnitool")
	if b, err := os.ReadFile("/tmp/refbin/cnitool"); err == nil {
		if err := os.WriteFile(dst, b, 0o755); err != nil {
			l.t.Fatal(err)
		}
		return
	}
	out, err := exec.Command("go", "build", "-o", dst, "github.com/containernetworking/cni/cnitool").CombinedOutput()
	if err != nil {
		l.t.Fatalf("building the reference cnitool: %v\n%s", err, out)
	}
}

// conflist writes a conflist named name with the given plugins (ipam
// dataDir pointed at the lab's) and returns its name.
func (l *lab) conflist(name string, plugins ...map[string]any) string {
	l.t.Helper()
	for _, p := range plugins {
		if ipam, ok := p["ipam"].(map[string]any); ok {
			ipam["dataDir"] = l.dataDir
		}
	}
	b, _ := json.Marshal(map[string]any{"cniVersion": "1.0.0", "name": name, "plugins": plugins})
	if err := os.WriteFile(filepath.Join(l.confDir, name+".conflist"), b, 0o644); err != nil {
		l.t.Fatal(err)
	}
	return name
}

func bridgePlugin(br, subnet string) map[string]any {
	return map[string]any{"type": "bridge", "bridge": br, "isDefaultGateway": true, "ipMasq": true, "hairpinMode": true,
		"ipam": map[string]any{"type": "host-local", "subnet": subnet}}
}

// cnitool runs the reference cnitool in the host namespace.
func (l *lab) cnitool(capArgs any, args ...string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(context.Background(), filepath.Join(l.toolDir, "cnitool"), args...)
	cmd.Env = []string{"PATH=" + l.toolDir, "CNI_PATH=" + l.plugins, "NETCONFPATH=" + l.confDir}
	if capArgs != nil {
		b, _ := json.Marshal(capArgs)
		cmd.Env = append(cmd.Env, "CAP_ARGS="+string(b))
	}
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := netns.Do(l.host, cmd.Run); err != nil {
		return stdout.Bytes(), fmt.Errorf("cnitool %s: %v\n%s%s", strings.Join(args, " "), err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.Bytes(), nil
}

// containerID is the ID cnitool gives the attachment of nsPath.
func containerID(nsPath string) string {
	sum := sha512.Sum512([]byte(nsPath))
	return fmt.Sprintf("cnitool-%x", sum[:10])
}

// add runs cnitool add and returns the container's IPv4 address; the
// cnitool cache entry is removed when the test ends.
func (l *lab) add(network, nsPath string, capArgs any) net.IP {
	l.t.Helper()
	l.t.Cleanup(func() {
		os.Remove(filepath.Join("/var/lib/cni/results", network+"-"+containerID(nsPath)+"-eth0"))
	})
	out, err := l.cnitool(capArgs, "add", network, nsPath)
	if err != nil {
		l.t.Fatal(err)
	}
	res, err := cni.ParseResult(out, "1.0.0")
	if err != nil {
		l.t.Fatalf("cnitool printed %s: %v", out, err)
	}
	for _, ip := range res.IPs {
		if ip.IsV4() {
			return ip.Address.IP
		}
	}
	l.t.Fatalf("no IPv4 address in %s", out)
	return nil
}

func (l *lab) del(network, nsPath string, capArgs any) {
	l.t.Helper()
	if _, err := l.cnitool(capArgs, "del", network, nsPath); err != nil {
		l.t.Fatal(err)
	}
}

func portMappings(maps ...map[string]any) map[string]any {
	return map[string]any{"portMappings": maps}
}

// snapshot renders the host namespace's nftables ruleset (tables, chains,
// rules without handles, sets with elements) and tc state (every link's
// qdiscs and filters) as text.
func (l *lab) snapshot() string {
	l.t.Helper()
	h, err := vnetns.GetFromPath(l.host)
	if err != nil {
		l.t.Fatal(err)
	}
	defer h.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(h)))
	if err != nil {
		l.t.Fatal(err)
	}
	var lines []string
	tables, err := c.ListTables()
	if err != nil {
		l.t.Fatal(err)
	}
	for _, tb := range tables {
		lines = append(lines, fmt.Sprintf("table %d %s", tb.Family, tb.Name))
		chains, _ := c.ListChainsOfTableFamily(tb.Family)
		for _, ch := range chains {
			if ch.Table.Name != tb.Name {
				continue
			}
			lines = append(lines, fmt.Sprintf("  chain %s", ch.Name))
			rules, _ := c.GetRules(tb, ch)
			for _, r := range rules {
				var ex []string
				for _, e := range r.Exprs {
					ex = append(ex, fmt.Sprintf("%T%+v", e, e))
				}
				lines = append(lines, "    rule "+strings.Join(ex, " "))
			}
		}
		sets, _ := c.GetSets(tb)
		for _, s := range sets {
			els, _ := c.GetSetElements(s)
			var es []string
			for _, e := range els {
				es = append(es, fmt.Sprintf("%x-%x:%x %q", e.Key, e.KeyEnd, e.Val, e.Comment))
			}
			sort.Strings(es)
			lines = append(lines, fmt.Sprintf("  set %s {%s}", s.Name, strings.Join(es, ", ")))
		}
	}
	hh := nstest.Handle(l.t, l.host)
	links, err := hh.LinkList()
	if err != nil {
		l.t.Fatal(err)
	}
	for _, lk := range links {
		qs, _ := hh.QdiscList(lk)
		for _, q := range qs {
			lines = append(lines, fmt.Sprintf("link %s qdisc %s %+v", lk.Attrs().Name, q.Type(), *q.Attrs()))
		}
		for _, parent := range []uint32{netlink.HANDLE_ROOT, netlink.MakeHandle(0xffff, 0)} {
			fs, _ := hh.FilterList(lk, parent)
			for _, f := range fs {
				lines = append(lines, fmt.Sprintf("link %s filter %s %+v", lk.Attrs().Name, f.Type(), *f.Attrs()))
			}
		}
	}
	return strings.Join(lines, "\n")
}

// udpEcho answers every datagram in nsPath on port with reply.
func udpEcho(t *testing.T, nsPath string, port int, reply string) {
	t.Helper()
	var conn net.PacketConn
	if err := netns.Do(nsPath, func() (err error) {
		conn, err = net.ListenPacket("udp4", fmt.Sprintf("0.0.0.0:%d", port))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			conn.WriteTo([]byte(reply), from)
		}
	}()
}

// udpClient is a UDP socket in the client namespace with a fixed source
// port, so every exchange belongs to the same conntrack flow.
type udpClient struct{ conn *net.UDPConn }

func newUDPClient(t *testing.T, nsPath string, dst string) *udpClient {
	t.Helper()
	var conn *net.UDPConn
	raddr, err := net.ResolveUDPAddr("udp4", dst)
	if err != nil {
		t.Fatal(err)
	}
	if err := netns.Do(nsPath, func() (err error) {
		conn, err = net.DialUDP("udp4", &net.UDPAddr{Port: 40404}, raddr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &udpClient{conn}
}

// ask sends a few datagrams and returns the first answer ("" if none).
func (c *udpClient) ask() string {
	buf := make([]byte, 100)
	for range 5 {
		c.conn.Write([]byte("hi"))
		c.conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if n, err := c.conn.Read(buf); err == nil {
			return string(buf[:n])
		}
	}
	return ""
}
