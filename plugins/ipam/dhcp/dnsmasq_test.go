package dhcp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/knit-cni/knit/internal/dhcpd"
	"github.com/knit-cni/knit/internal/dhcpd/api"
	"github.com/knit-cni/knit/internal/netns"
	"github.com/knit-cni/knit/internal/nstest"
	"github.com/knit-cni/knit/pkg/cni"
	"github.com/knit-cni/knit/pkg/cni/skel"
)

// lab is a DHCP server (dnsmasq) in its own namespace, reachable from
// container namespaces through veth pairs, and a daemon state directory.
type lab struct {
	t      *testing.T
	server string
	dir    string
	leases string // dnsmasq's lease file
	socket string
	state  string
	n      int
}

func newLab(t *testing.T) *lab {
	t.Helper()
	nstest.RequireRoot(t)
	bin, err := exec.LookPath("dnsmasq")
	if err != nil {
		t.Skip("dnsmasq not installed: apt-get install dnsmasq-base (scripts/deps does)")
	}
	dir := t.TempDir()
	l := &lab{t: t, server: nstest.New(t, "dsrv"), dir: dir, leases: filepath.Join(dir, "dnsmasq.leases"),
		socket: filepath.Join(dir, "dhcp.sock"), state: filepath.Join(dir, "state")}
	nstest.Run(t, l.server, "ip", "link", "add", "br0", "type", "bridge")
	nstest.Run(t, l.server, "ip", "addr", "add", "10.70.0.1/24", "dev", "br0")
	nstest.Run(t, l.server, "ip", "link", "set", "br0", "up")
	nstest.Start(t, l.server, bin, "--no-daemon", "--conf-file=/dev/null", "--user=root", "--port=0",
		"--interface=br0", "--bind-interfaces", "--dhcp-authoritative", "--no-ping",
		"--dhcp-range=10.70.0.50,10.70.0.150,255.255.255.0,2m",
		"--dhcp-option=option:router,10.70.0.1", "--dhcp-option=option:dns-server,10.70.0.53",
		"--dhcp-option=option:domain-name,knit.test", "--dhcp-option=option:static-route,172.20.0.0,10.70.0.9",
		"--dhcp-leasefile="+l.leases, "--pid-file="+filepath.Join(dir, "dnsmasq.pid"), "--log-dhcp")
	return l
}

// container makes a container namespace whose eth0 is one end of a veth
// plugged into the server's bridge.
func (l *lab) container() string {
	l.t.Helper()
	l.n++
	ctr := nstest.New(l.t, "dctr")
	peer := fmt.Sprintf("v%d", l.n)
	nstest.Run(l.t, ctr, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", peer, "netns", filepath.Base(l.server))
	nstest.Run(l.t, l.server, "ip", "link", "set", peer, "master", "br0", "up")
	// Up and forwarding before the plugin runs, as a main plugin leaves it
	// (the daemon brings a down link up itself, but the first DISCOVER may
	// then be lost while the kernel settles carrier, costing a retry).
	nstest.Run(l.t, ctr, "ip", "link", "set", "eth0", "up")
	waitFor(l.t, "the bridge port to forward", func() bool {
		out, _ := nstest.Output(l.server, "ip", "-d", "-o", "link", "show", "dev", peer)
		return strings.Contains(string(out), "state UP") && strings.Contains(string(out), "state forwarding")
	})
	return ctr
}

// daemon starts a daemon in this process; stop stops it and waits.
func (l *lab) daemon() (d *dhcpd.Daemon, stop func()) {
	l.t.Helper()
	d, err := dhcpd.New(dhcpd.Config{SocketPath: l.socket, StateDir: l.state, Timeout: 2 * time.Second, RetryMin: time.Second})
	if err != nil {
		l.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Serve(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if err := api.NewClient(l.socket).Do(context.Background(), "GET", "/v1/status", nil, nil); err == nil {
			break
		}
		if time.Now().After(deadline) {
			l.t.Fatal("daemon did not start serving")
		}
		time.Sleep(20 * time.Millisecond)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				l.t.Errorf("daemon: %v", err)
			}
		})
	}
	l.t.Cleanup(stop)
	return d, stop
}

func (l *lab) conf(extraIPAM string) string {
	return `{"cniVersion":"1.1.0","name":"dnet","type":"macvlan","ipam":{"type":"dhcp","daemonSocketPath":"` + l.socket + `"` + extraIPAM + `}}`
}

type outcome struct {
	code   int
	stdout string
	took   time.Duration
}

func (o outcome) result(t *testing.T) *cni.Result {
	t.Helper()
	if o.code != 0 {
		t.Fatalf("plugin failed: %s", o.stdout)
	}
	r, err := cni.ParseResult([]byte(o.stdout), "")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (o outcome) cniErr(t *testing.T) *cni.Error {
	t.Helper()
	var e cni.Error
	if o.code == 0 || json.Unmarshal([]byte(o.stdout), &e) != nil {
		t.Fatalf("want a CNI error, got %d %s", o.code, o.stdout)
	}
	return &e
}

func run(cmd, cid, nsPath, args, conf string) outcome {
	env := map[string]string{"CNI_COMMAND": cmd, "CNI_CONTAINERID": cid, "CNI_NETNS": nsPath, "CNI_IFNAME": "eth0",
		"CNI_ARGS": args, "CNI_PATH": "/nonexistent"}
	var out bytes.Buffer
	start := time.Now()
	code := skel.Execute(context.Background(), Plugin, Info, skel.IO{
		Getenv: func(k string) string { return env[k] }, Environ: func() []string { return nil },
		Stdin: strings.NewReader(conf), Stdout: &out, Stderr: os.Stderr,
	})
	return outcome{code, out.String(), time.Since(start)}
}

// serverLease returns dnsmasq's lease line for ip ("" if none).
func (l *lab) serverLease(ip string) string {
	data, _ := os.ReadFile(l.leases)
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 5 && f[2] == ip {
			return line
		}
	}
	return ""
}

func (l *lab) stateFiles() []string {
	var out []string
	ents, _ := os.ReadDir(l.state)
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func leaseExpiry(line string) string { return strings.Fields(line)[0] }

// waitFor polls cond for up to 15s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The whole life of a lease against dnsmasq, with the daemon restarted in
// the middle of it.
func TestLeaseLifecycleWithRestart(t *testing.T) {
	l := newLab(t)
	ctr, gone := l.container(), l.container()
	_, stop := l.daemon()
	conf := l.conf(`,"priority":100,"provide":[{"option":"host-name","fromArg":"K8S_POD_NAME"}],"request":[{"option":"interface-mtu"}]`)
	args := "IgnoreUnknown=1;K8S_POD_NAME=web-1"

	res := run("ADD", "c1", ctr, args, conf).result(t)
	if len(res.IPs) != 1 || res.IPs[0].Gateway.String() != "10.70.0.1" || !strings.HasSuffix(res.IPs[0].Address.String(), "/24") {
		t.Fatalf("ADD result: %+v", res.IPs)
	}
	ip := res.IPs[0].Address.IP.String()
	// As the main plugin would: the server answers renewals by unicast,
	// which needs the container to answer ARP for its address.
	nstest.Run(t, ctr, "ip", "addr", "add", res.IPs[0].Address.String(), "dev", "eth0")
	// Option 33's classful route, then the default route via the router.
	if len(res.Routes) != 2 || res.Routes[0].Dst.String() != "172.20.0.0/16" || res.Routes[0].GW.String() != "10.70.0.9" ||
		res.Routes[1].Dst.String() != "0.0.0.0/0" || res.Routes[1].Priority != 100 ||
		len(res.DNS.Nameservers) != 1 || res.DNS.Nameservers[0] != "10.70.0.53" || res.DNS.Domain != "knit.test" {
		t.Fatalf("ADD routes %v dns %+v", res.Routes, res.DNS)
	}
	// dnsmasq saw the host name and the client id "c1/dnet/eth0".
	line := l.serverLease(ip)
	wantID := "00:" + strings.TrimSuffix(fmt.Sprintf("% x", "c1/dnet/eth0"), "")
	wantID = strings.ReplaceAll(wantID, " ", ":")
	if f := strings.Fields(line); len(f) < 5 || f[3] != "web-1" || f[4] != wantID {
		t.Fatalf("dnsmasq lease %q: want host name web-1 and client id %s", line, wantID)
	}
	// Re-ADD returns the same lease; CHECK agrees with the result.
	if again := run("ADD", "c1", ctr, args, conf).result(t); again.IPs[0].Address.IP.String() != ip {
		t.Fatalf("re-ADD gave %s, want %s", again.IPs[0].Address.IP, ip)
	}
	withPrev := strings.TrimSuffix(conf, "}") + `,"prevResult":{"cniVersion":"1.1.0","ips":[{"address":"` + ip + `/24"}]}}`
	if o := run("CHECK", "c1", ctr, args, withPrev); o.code != 0 {
		t.Fatalf("CHECK: %s", o.stdout)
	}
	wrongPrev := strings.TrimSuffix(conf, "}") + `,"prevResult":{"cniVersion":"1.1.0","ips":[{"address":"10.70.0.9/24"}]}}`
	if e := run("CHECK", "c1", ctr, args, wrongPrev).cniErr(t); e.Code != cni.ErrUnknownContainer {
		t.Fatalf("CHECK against a wrong result: %v", e)
	}
	// A second container whose namespace will vanish while the daemon is down.
	run("ADD", "c2", gone, "", conf).result(t)
	if n := len(l.stateFiles()); n != 2 {
		t.Fatalf("state dir holds %v", l.stateFiles())
	}

	// Daemon down: STATUS is 50, ADD fails fast saying what to do, nothing
	// was released.
	stop()
	if e := run("STATUS", "", "", "", conf).cniErr(t); e.Code != cni.ErrPluginNotAvailable {
		t.Fatalf("STATUS without daemon: %v", e)
	}
	o := run("ADD", "c3", ctr, "", conf)
	if e := o.cniErr(t); e.Code != cni.ErrPluginNotAvailable || !strings.Contains(e.Msg, "knit dhcp") || o.took > time.Second {
		t.Fatalf("ADD without daemon took %v: %v", o.took, e)
	}
	if l.serverLease(ip) == "" {
		t.Fatal("stopping the daemon released the lease")
	}
	before := leaseExpiry(l.serverLease(ip))
	var rec struct {
		ContainerID, Netns, Network, IfName, ClientID, Hostname, Address string
		Expiry                                                           time.Time
	}
	for _, f := range l.stateFiles() {
		data, _ := os.ReadFile(filepath.Join(l.state, f))
		json.Unmarshal(data, &rec)
		if rec.ContainerID == "c1" {
			break
		}
	}
	if rec.ContainerID != "c1" || rec.Netns != ctr || rec.Network != "dnet" || rec.IfName != "eth0" || rec.ClientID != "c1/dnet/eth0" ||
		rec.Hostname != "web-1" || rec.Address != ip || rec.Expiry.IsZero() {
		t.Fatalf("persisted lease: %+v", rec)
	}
	if err := netns.DeletePath(gone); err != nil {
		t.Fatal(err)
	}

	// dnsmasq keeps expiry times in whole seconds.
	time.Sleep(1100 * time.Millisecond)
	d, _ := l.daemon()
	// The restarted daemon renewed c1 at once and dropped c2.
	waitFor(t, "the reloaded lease to be renewed", func() bool {
		line := l.serverLease(ip)
		return line != "" && leaseExpiry(line) > before
	})
	waitFor(t, "the lease of the vanished namespace to be dropped", func() bool { return len(l.stateFiles()) == 1 })
	if o := run("STATUS", "", "", "", conf); o.code != 0 {
		t.Fatalf("STATUS: %s", o.stdout)
	}
	// Renewal on demand (what T1 does) extends the server's lease again.
	before = leaseExpiry(l.serverLease(ip))
	time.Sleep(1100 * time.Millisecond)
	key := api.Key{ContainerID: "c1", Network: "dnet", IfName: "eth0"}
	if r, err := d.Renew(context.Background(), key); err != nil || r.IPs[0].Address.IP.String() != ip {
		t.Fatalf("Renew: %v %v", r, err)
	}
	if after := leaseExpiry(l.serverLease(ip)); after <= before {
		t.Fatalf("server lease expiry %s not extended past %s", after, before)
	}
	if again := run("ADD", "c1", ctr, args, conf).result(t); again.IPs[0].Address.IP.String() != ip {
		t.Fatal("lease changed across the restart")
	}

	// DEL releases: the server forgets the lease, the file goes.
	if o := run("DEL", "c1", ctr, args, conf); o.code != 0 {
		t.Fatalf("DEL: %s", o.stdout)
	}
	waitFor(t, "dnsmasq to drop the released lease", func() bool { return l.serverLease(ip) == "" })
	if f := l.stateFiles(); len(f) != 0 {
		t.Fatalf("state left after DEL: %v", f)
	}
	if o := run("DEL", "c1", ctr, args, conf); o.code != 0 {
		t.Fatalf("second DEL: %s", o.stdout)
	}
	if e := run("CHECK", "c1", ctr, args, conf).cniErr(t); e.Code != cni.ErrUnknownContainer {
		t.Fatalf("CHECK after DEL: %v", e)
	}
}

// GC releases the network's leases that are not listed; without a list it
// releases nothing.
func TestGC(t *testing.T) {
	l := newLab(t)
	a, b := l.container(), l.container()
	l.daemon()
	conf := l.conf("")
	oa := run("ADD", "a", a, "", conf)
	t.Logf("ADD with a DORA against dnsmasq took %v", oa.took)
	ipA := oa.result(t).IPs[0].Address.IP.String()
	ipB := run("ADD", "b", b, "", conf).result(t).IPs[0].Address.IP.String()
	if ipA == ipB {
		t.Fatalf("two containers got %s", ipA)
	}
	t.Logf("re-ADD of a held lease took %v", run("ADD", "b", b, "", conf).took)
	if o := run("GC", "", "", "", conf); o.code != 0 || len(l.stateFiles()) != 2 {
		t.Fatalf("GC without a list: %s, state %v", o.stdout, l.stateFiles())
	}
	gc := strings.TrimSuffix(conf, "}") + `,"cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}]}`
	if o := run("GC", "", "", "", gc); o.code != 0 {
		t.Fatalf("GC: %s", o.stdout)
	}
	waitFor(t, "dnsmasq to drop b's lease", func() bool { return l.serverLease(ipB) == "" })
	if l.serverLease(ipA) == "" || len(l.stateFiles()) != 1 {
		t.Fatalf("GC released a: %v", l.stateFiles())
	}
}

// A persisted lease that expired while the daemon was down is acquired
// again when the daemon comes back, and kept renewed on the new schedule.
func TestExpiredLeaseReacquired(t *testing.T) {
	l := newLab(t)
	ctr := l.container()
	_, stop := l.daemon()
	conf := l.conf("")
	res := run("ADD", "x", ctr, "", conf).result(t)
	nstest.Run(t, ctr, "ip", "addr", "add", res.IPs[0].Address.String(), "dev", "eth0")
	stop()
	files := l.stateFiles()
	if len(files) != 1 {
		t.Fatalf("state: %v", files)
	}
	path := filepath.Join(l.state, files[0])
	var rec map[string]any
	data, _ := os.ReadFile(path)
	if err := json.Unmarshal(data, &rec); err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-time.Minute).Format(time.RFC3339Nano)
	rec["renew"], rec["rebind"], rec["expiry"] = past, past, past
	data, _ = json.Marshal(rec)
	os.WriteFile(path, data, 0o600)

	l.daemon()
	waitFor(t, "the expired lease to be acquired again", func() bool {
		data, _ := os.ReadFile(path)
		var r struct{ Expiry, Renew, Rebind time.Time }
		json.Unmarshal(data, &r)
		return r.Expiry.After(time.Now()) && r.Renew.Before(r.Rebind) && r.Rebind.Before(r.Expiry)
	})
	if o := run("CHECK", "x", ctr, "", conf); o.code != 0 {
		t.Fatalf("CHECK after re-acquiring: %s", o.stdout)
	}
}
