package hostlocal

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/knit-cni/knit/pkg/cni"
)

const dual = `"ranges":[[{"subnet":"10.1.0.0/29"}],[{"subnet":"fd01::/125"}]]`

func TestAddResultAndLayout(t *testing.T) {
	dir := t.TempDir()
	resolv := filepath.Join(dir, "resolv.conf")
	writeFile(t, resolv, "# comment\nnameserver 10.1.0.53\nnameserver fd01::53\ndomain example.com\nsearch a.example b.example\n; other\noptions ndots:2 edns0\nsortlist x\n")
	conf := netConf("1.0.0", dir, dual+`,"routes":[{"dst":"0.0.0.0/0"},{"dst":"::/0","gw":"fd01::1"}],"resolvConf":"`+resolv+`"`)
	o := mustOK(t, run(t, call{cmd: "ADD", cid: "c1", conf: conf}))
	if got := o.addrs(); !reflect.DeepEqual(got, []string{"10.1.0.2/29", "fd01::2/125"}) {
		t.Fatalf("addresses %v", got)
	}
	for _, ip := range o.res.IPs {
		if ip.Interface != nil {
			t.Errorf("IPAM result carries an interface index")
		}
	}
	if o.res.IPs[0].Gateway.String() != "10.1.0.1" || o.res.IPs[1].Gateway.String() != "fd01::1" {
		t.Errorf("gateways %v %v", o.res.IPs[0].Gateway, o.res.IPs[1].Gateway)
	}
	if len(o.res.Routes) != 2 || o.res.Routes[1].GW.String() != "fd01::1" {
		t.Errorf("routes %v", o.res.Routes)
	}
	wantDNS := cni.DNS{Nameservers: []string{"10.1.0.53", "fd01::53"}, Domain: "example.com",
		Search: []string{"a.example", "b.example"}, Options: []string{"ndots:2", "edns0"}}
	if !reflect.DeepEqual(o.res.DNS, wantDNS) {
		t.Errorf("dns %+v", o.res.DNS)
	}
	if !strings.Contains(o.raw, `"cniVersion": "1.0.0"`) {
		t.Errorf("result not in the request's version: %s", o.raw)
	}

	// Byte-exact layout.
	net := filepath.Join(dir, "testnet")
	for name, want := range map[string]string{
		"10.1.0.2": "c1\r\neth0", "fd01::2": "c1\r\neth0",
		"last_reserved_ip.0": "10.1.0.2", "last_reserved_ip.1": "fd01::2", "lock": "",
	} {
		b, err := os.ReadFile(filepath.Join(net, name))
		if err != nil || string(b) != want {
			t.Errorf("%s: %q, %v; want %q", name, b, err, want)
		}
	}
	for name, mode := range map[string]os.FileMode{"10.1.0.2": 0o644, "last_reserved_ip.0": 0o644, "lock": 0o750} {
		fi, _ := os.Stat(filepath.Join(net, name))
		if fi.Mode().Perm()&^0o022 != mode&^0o022 { // the process umask may remove more
			t.Errorf("%s mode %v, want %v", name, fi.Mode().Perm(), mode)
		}
	}
	if got := listDir(t, net); !reflect.DeepEqual(got, []string{"10.1.0.2", "fd01::2", "last_reserved_ip.0", "last_reserved_ip.1", "lock"}) {
		t.Errorf("network dir holds %v", got)
	}

	// 0.2.0 result shape from the same plugin.
	conf020 := netConf("0.2.0", dir, dual)
	o = mustOK(t, run(t, call{cmd: "ADD", cid: "c2", conf: conf020}))
	if !strings.Contains(o.raw, `"ip4"`) || !strings.Contains(o.raw, `"ip6"`) {
		t.Errorf("0.2.0 result: %s", o.raw)
	}
}

func TestReAddIsIdempotent(t *testing.T) {
	dir := t.TempDir()
	conf := netConf("1.0.0", dir, dual)
	first := mustOK(t, run(t, call{cmd: "ADD", cid: "c1", conf: conf}))
	again := mustOK(t, run(t, call{cmd: "ADD", cid: "c1", conf: conf}))
	if !reflect.DeepEqual(first.addrs(), again.addrs()) {
		t.Fatalf("re-ADD gave %v, first ADD %v", again.addrs(), first.addrs())
	}
	if n := len(allocations(t, dir)); n != 2 {
		t.Fatalf("re-ADD left %d allocations, want 2", n)
	}
	// Another interface of the same container is another attachment.
	other := mustOK(t, run(t, call{cmd: "ADD", cid: "c1", ifname: "net1", conf: conf}))
	if slices.Equal(other.addrs(), first.addrs()) {
		t.Fatalf("second interface got the same addresses")
	}
	// Idempotence also holds without a hint (file written by another implementation).
	os.RemoveAll(filepath.Join(dir, ".knit"))
	again = mustOK(t, run(t, call{cmd: "ADD", cid: "c1", conf: conf}))
	if !reflect.DeepEqual(first.addrs(), again.addrs()) {
		t.Fatalf("re-ADD without hints gave %v, want %v", again.addrs(), first.addrs())
	}
	// A stale hint claiming an address for us does not fool ADD.
	writeFile(t, filepath.Join(dir, ".knit", "testnet", "10.1.0.2~c9~eth0"), "")
	o := mustOK(t, run(t, call{cmd: "ADD", cid: "c9", conf: conf}))
	if o.addrs()[0] == "10.1.0.2/29" {
		t.Fatalf("ADD believed a stale hint")
	}
	// Re-ADD asking for a different address than the one held is refused.
	mustFail(t, run(t, call{cmd: "ADD", cid: "c1", args: "IP=10.1.0.6", conf: conf}), cni.ErrInvalidNetworkConfig, "already holds 10.1.0.2")
}

func TestDelIdempotentAndRoundRobin(t *testing.T) {
	dir := t.TempDir()
	conf := netConf("1.0.0", dir, dual)
	a := mustOK(t, run(t, call{cmd: "ADD", cid: "a", conf: conf}))
	mustOK(t, run(t, call{cmd: "ADD", cid: "keep", conf: conf}))
	mustOK(t, run(t, call{cmd: "DEL", cid: "a", conf: conf}))
	mustOK(t, run(t, call{cmd: "DEL", cid: "a", conf: conf}))
	mustOK(t, run(t, call{cmd: "DEL", cid: "never-added", conf: conf}))
	for ip := range allocations(t, dir) {
		if strings.HasPrefix(a.addrs()[0], ip+"/") {
			t.Fatalf("%s still allocated after DEL", ip)
		}
	}
	if n := len(allocations(t, dir)); n != 2 {
		t.Fatalf("DEL of a removed other allocations: %d left", n)
	}
	// Round-robin: the released address is not handed out next.
	b := mustOK(t, run(t, call{cmd: "ADD", cid: "b", conf: conf}))
	if b.addrs()[0] != "10.1.0.4/29" {
		t.Fatalf("next ADD got %v, want 10.1.0.4 (after the last reserved)", b.addrs())
	}
	// DEL on a network never used, and with a config whose ranges no longer validate.
	mustOK(t, run(t, call{cmd: "DEL", cid: "b", conf: netConf("1.0.0", dir, `"subnet":"10.9.9.9/24"`)}))
	if _, ok := allocations(t, dir)["10.1.0.4"]; ok {
		t.Fatal("DEL with an invalid range config did not release")
	}
	if left := hintNames(t, dir); len(left) != 2 {
		t.Fatalf("hints left: %v", left)
	}
}

func TestRequestedIPs(t *testing.T) {
	dir := t.TempDir()
	conf := netConf("1.0.0", dir, dual, `"args":{"cni":{"ips":["fd01::5"]}}`)
	o := mustOK(t, run(t, call{cmd: "ADD", cid: "c1", args: "IgnoreUnknown=1;K8S_POD_NAME=x;IP=10.1.0.5/29", conf: conf}))
	if !reflect.DeepEqual(o.addrs(), []string{"10.1.0.5/29", "fd01::5/125"}) {
		t.Fatalf("got %v", o.addrs())
	}
	rt := netConf("1.0.0", dir, dual, `"runtimeConfig":{"ips":["10.1.0.5"]}`)
	mustFail(t, run(t, call{cmd: "ADD", cid: "c2", conf: rt}), cni.ErrTryAgainLater, `10.1.0.5 is already allocated to "c1/eth0"`)
	before := allocations(t, dir)
	for _, tc := range []struct{ args, conf, want string }{
		{"IP=10.2.0.5", netConf("1.0.0", dir, dual), "CNI_ARGS IP=: requested IP 10.2.0.5 is not in any range"},
		{"IP=10.1.0.1", netConf("1.0.0", dir, dual), "requested IP 10.1.0.1 is the gateway of range 10.1.0.1-10.1.0.6"},
		{"IP=banana", netConf("1.0.0", dir, dual), `"banana" is not an IP address`},
		{"IP=10.1.0.3,10.1.0.4", netConf("1.0.0", dir, dual), "both fall in range set 0"},
		{"", netConf("1.0.0", dir, dual, `"runtimeConfig":{"ips":["10.9.0.1/24"]}`), "runtimeConfig.ips: requested IP 10.9.0.1 is not in any range"},
	} {
		mustFail(t, run(t, call{cmd: "ADD", cid: "c3", args: tc.args, conf: tc.conf}), cni.ErrInvalidNetworkConfig, tc.want)
	}
	if after := allocations(t, dir); !reflect.DeepEqual(before, after) {
		t.Fatalf("failed ADDs changed the store: %v -> %v", before, after)
	}
}

func TestExhaustion(t *testing.T) {
	dir := t.TempDir()
	// v4 /30 has one allocatable address (.2); v6 has plenty.
	conf := netConf("1.1.0", dir, `"ranges":[[{"subnet":"10.3.0.0/30"}],[{"subnet":"fd03::/64"}]]`)
	mustOK(t, run(t, call{cmd: "STATUS", conf: conf}))
	mustOK(t, run(t, call{cmd: "ADD", cid: "c1", conf: conf}))
	before := listDir(t, filepath.Join(dir, "testnet"))
	beforeHints := hintNames(t, dir)
	mustFail(t, run(t, call{cmd: "ADD", cid: "c2", conf: conf}), cni.ErrPluginNotAvailable,
		"no IP addresses available in range set 0 (10.3.0.1-10.3.0.2): all 1 are allocated")
	if after := listDir(t, filepath.Join(dir, "testnet")); !reflect.DeepEqual(before, after) {
		t.Fatalf("failed ADD left files: %v -> %v", before, after)
	}
	if after := hintNames(t, dir); !reflect.DeepEqual(beforeHints, after) {
		t.Fatalf("failed ADD left hints: %v -> %v", beforeHints, after)
	}
	mustFail(t, run(t, call{cmd: "STATUS", conf: conf}), cni.ErrPluginNotAvailable, "range set 0 (10.3.0.1-10.3.0.2)")
	// A v6 set exhausted in the second set rolls back the first set's reservation.
	dir2 := t.TempDir()
	conf2 := netConf("1.1.0", dir2, `"ranges":[[{"subnet":"10.4.0.0/24"}],[{"subnet":"fd04::/126","rangeStart":"fd04::3"}]]`)
	mustOK(t, run(t, call{cmd: "ADD", cid: "c1", conf: conf2}))
	mustFail(t, run(t, call{cmd: "ADD", cid: "c2", conf: conf2}), cni.ErrPluginNotAvailable, "range set 1 (fd04::3-fd04::3)")
	if got := allocations(t, dir2); len(got) != 2 {
		t.Fatalf("rollback failed, allocations: %v", got)
	}
	mustOK(t, run(t, call{cmd: "DEL", cid: "c1", conf: conf2}))
	mustOK(t, run(t, call{cmd: "STATUS", conf: conf2}))
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	conf := netConf("1.0.0", dir, dual)
	o := mustOK(t, run(t, call{cmd: "ADD", cid: "c1", conf: conf}))
	prev := `"prevResult":{"cniVersion":"1.0.0","ips":[{"address":"` + o.addrs()[0] + `"},{"address":"` + o.addrs()[1] + `"}]}`
	mustOK(t, run(t, call{cmd: "CHECK", cid: "c1", conf: netConf("1.0.0", dir, dual, prev)}))
	mustFail(t, run(t, call{cmd: "CHECK", cid: "c2", conf: conf}), cni.ErrUnknownContainer, "container c2 interface eth0 holds no address in range set 0")
	// Lose the v6 allocation: CHECK names the set.
	os.Remove(filepath.Join(dir, "testnet", "fd01::2"))
	mustFail(t, run(t, call{cmd: "CHECK", cid: "c1", conf: conf}), cni.ErrUnknownContainer, "range set 1 (fd01::1-fd01::7)")
	// prevResult claiming someone else's address.
	mustOK(t, run(t, call{cmd: "ADD", cid: "c1", conf: conf}))
	mustOK(t, run(t, call{cmd: "ADD", cid: "c3", conf: conf}))
	bad := `"prevResult":{"cniVersion":"1.0.0","ips":[{"address":"10.1.0.3/29"}]}`
	mustFail(t, run(t, call{cmd: "CHECK", cid: "c1", conf: netConf("1.0.0", dir, dual, bad)}), cni.ErrUnknownContainer, `prevResult lists 10.1.0.3`)
}

func TestGC(t *testing.T) {
	for _, key := range []string{"cni.dev/valid-attachments", "cni.dev/attachments"} {
		t.Run(key, func(t *testing.T) {
			dir := t.TempDir()
			conf := netConf("1.1.0", dir, dual)
			for _, cid := range []string{"a", "b", "c"} {
				mustOK(t, run(t, call{cmd: "ADD", cid: cid, conf: conf}))
			}
			mustOK(t, run(t, call{cmd: "ADD", cid: "a", ifname: "net1", conf: conf}))
			net := filepath.Join(dir, "testnet")
			writeFile(t, filepath.Join(net, "10.1.0.6"), "legacy-keep")
			writeFile(t, filepath.Join(net, "fd01::6"), "legacy-drop\n")
			writeFile(t, filepath.Join(net, "fd01::7"), "") // torn
			writeFile(t, filepath.Join(net, "garbage"), "a\r\neth0")
			gc := netConf("1.1.0", dir, dual, `"`+key+`":[{"containerID":"a","ifname":"eth0"},{"containerID":"legacy-keep","ifname":"eth0"}]`)
			mustOK(t, run(t, call{cmd: "GC", conf: gc}))
			got := allocations(t, dir)
			want := map[string]string{"10.1.0.2": "a\r\neth0", "fd01::2": "a\r\neth0", "10.1.0.6": "legacy-keep", "garbage": "a\r\neth0"}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("after GC: %v, want %v", got, want)
			}
			if hints := hintNames(t, dir); len(hints) != 2 {
				t.Fatalf("hints after GC: %v", hints)
			}
			// GC without the key at all (the reference cnitool's) succeeds
			// and releases nothing.
			mustOK(t, run(t, call{cmd: "GC", conf: netConf("1.1.0", dir, dual)}))
			if got := allocations(t, dir); len(got) != 4 {
				t.Fatalf("GC without a list changed the store: %v", got)
			}
			// GC with nothing valid releases everything.
			mustOK(t, run(t, call{cmd: "GC", conf: netConf("1.1.0", dir, dual, `"`+key+`":[]`)}))
			if got := allocations(t, dir); len(got) != 1 {
				t.Fatalf("after empty GC: %v", got)
			}
		})
	}
}

func TestReferenceFilesHonoured(t *testing.T) {
	dir := t.TempDir()
	net := filepath.Join(dir, "testnet")
	// Files exactly as the reference writes them, plus whitespace variants and garbage.
	writeFile(t, filepath.Join(net, "10.1.0.2"), "other\r\neth0")
	writeFile(t, filepath.Join(net, "10.1.0.3"), "  spaced\r\neth0\n")
	writeFile(t, filepath.Join(net, "10.1.0.4"), "oldstyle")
	writeFile(t, filepath.Join(net, "last_reserved_ip.0"), "10.1.0.4")
	writeFile(t, filepath.Join(net, "10.1.0.999"), "x")
	writeFile(t, filepath.Join(net, "sub", "10.1.0.5"), "x")
	conf := netConf("1.0.0", dir, dual)
	o := mustOK(t, run(t, call{cmd: "ADD", cid: "new", conf: conf}))
	if o.addrs()[0] != "10.1.0.5/29" {
		t.Fatalf("got %v, want 10.1.0.5 (after last_reserved_ip.0)", o.addrs())
	}
	// Re-ADD of a whitespace-padded reference allocation returns it.
	o = mustOK(t, run(t, call{cmd: "ADD", cid: "spaced", conf: conf}))
	if o.addrs()[0] != "10.1.0.3/29" {
		t.Fatalf("spaced re-ADD got %v", o.addrs())
	}
	// Legacy id-only files are released by DEL.
	mustOK(t, run(t, call{cmd: "DEL", cid: "oldstyle", conf: conf}))
	if _, ok := allocations(t, dir)["10.1.0.4"]; ok {
		t.Fatal("legacy file not released")
	}
	mustOK(t, run(t, call{cmd: "DEL", cid: "other", conf: conf}))
	if _, ok := allocations(t, dir)["10.1.0.2"]; ok {
		t.Fatal("reference file not released")
	}
}

func TestEmptyFileReclaim(t *testing.T) {
	dir := t.TempDir()
	net := filepath.Join(dir, "testnet")
	conf := netConf("1.0.0", dir, `"ranges":[[{"subnet":"10.5.0.0/30"}]]`)
	writeFile(t, filepath.Join(net, "10.5.0.2"), "")
	mustFail(t, run(t, call{cmd: "ADD", cid: "c1", conf: conf}), cni.ErrPluginNotAvailable, "no IP addresses available")
	old := time.Now().Add(-2 * EmptyFileGrace)
	if err := os.Chtimes(filepath.Join(net, "10.5.0.2"), old, old); err != nil {
		t.Fatal(err)
	}
	o := mustOK(t, run(t, call{cmd: "ADD", cid: "c1", conf: conf}))
	if o.addrs()[0] != "10.5.0.2/30" {
		t.Fatalf("got %v", o.addrs())
	}
}

func TestLockErrorIsAnError(t *testing.T) {
	if os.Geteuid() == 0 {
		// root ignores permissions; use a lock path that is a directory instead.
		dir := t.TempDir()
		if err := os.MkdirAll(filepath.Join(dir, "testnet", "lock", "x"), 0o755); err != nil {
			t.Fatal(err)
		}
		mustFail(t, run(t, call{cmd: "ADD", cid: "c1", conf: netConf("1.0.0", dir, dual)}), cni.ErrIOFailure, "lock")
		return
	}
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "testnet"), 0o555)
	mustFail(t, run(t, call{cmd: "ADD", cid: "c1", conf: netConf("1.0.0", dir, dual)}), cni.ErrIOFailure, "lock")
}
