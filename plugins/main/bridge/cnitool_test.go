package bridge_test

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/json"
	"fmt"
	"github.com/knit-cni/knit/internal/plugintest"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/knit-cni/knit/internal/netns"
	"github.com/knit-cni/knit/internal/nstest"
	"github.com/knit-cni/knit/pkg/cni"
)

// The acceptance: the reference cnitool runs the talk's bridge
// config against knit's plugins with a PATH holding no iptables, nft or ip:
// ADD gives an address in 10.22.0.0/16 with gateway 10.22.0.1, two
// containers reach each other, CHECK passes, DEL removes the address and the
// masquerade rule.
func TestReferenceCnitoolTalkBridge(t *testing.T) {
	l := newLab(t)
	toolDir := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(toolDir, "cnitool"), "github.com/containernetworking/cni/cnitool")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the reference cnitool: %v\n%s", err, out)
	}
	for _, bin := range []string{"iptables", "nft", "ip"} {
		if _, err := os.Stat(filepath.Join(toolDir, bin)); err == nil {
			t.Fatalf("%s found in the tool dir", bin)
		}
		if _, err := os.Stat(filepath.Join(l.Plugins, bin)); err == nil {
			t.Fatalf("%s found in the plugin dir", bin)
		}
	}

	// The literal talk config (only the IPAM data dir pointed at the
	// test's) has no cniVersion, so it is 0.1.0 and the reference runtime
	// itself refuses CHECK; the same config at 1.0.0 shows CHECK passing.
	for _, v := range []string{"", "1.0.0"} {
		t.Run("v"+v, func(t *testing.T) { cnitoolRound(t, l, toolDir, v) })
	}
}

func cnitoolRound(t *testing.T, l *plugintest.Lab, toolDir, version string) {
	confDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(confDir, "10-talk.conf"), l.Conf("talk-bridge.conf", version, nil), 0o644); err != nil {
		t.Fatal(err)
	}
	c1, c2 := nstest.New(t, "t1"), nstest.New(t, "t2")
	for _, c := range []string{c1, c2} {
		// cnitool caches results under /var/lib/cni/results, keyed by a hash of the netns path.
		sum := sha512.Sum512([]byte(c))
		cache := filepath.Join("/var/lib/cni/results", fmt.Sprintf("%s-cnitool-%x-eth0", talkNet, sum[:10]))
		t.Cleanup(func() { os.Remove(cache) })
	}

	cnitool := func(args ...string) ([]byte, error) {
		var stdout, stderr bytes.Buffer
		cmd := exec.CommandContext(context.Background(), filepath.Join(toolDir, "cnitool"), args...)
		cmd.Env = []string{"PATH=" + toolDir, "CNI_PATH=" + l.Plugins, "NETCONFPATH=" + confDir}
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := netns.Do(l.Host, cmd.Run)
		if err != nil {
			return stdout.Bytes(), fmt.Errorf("cnitool %s: %v\n%s%s", strings.Join(args, " "), err, stdout.Bytes(), stderr.Bytes())
		}
		return stdout.Bytes(), nil
	}

	var addrs []net.IP
	for _, c := range []string{c1, c2} {
		out, err := cnitool("add", talkNet, c)
		if err != nil {
			t.Fatal(err)
		}
		var head struct {
			CNIVersion string `json:"cniVersion"`
		}
		_ = json.Unmarshal(out, &head)
		res, err := cni.ParseResult(out, head.CNIVersion)
		if err != nil {
			t.Fatalf("cnitool printed %s: %v", out, err)
		}
		ip := firstIP(t, res, true)
		if !mustCIDR("10.22.0.0/16").Contains(ip.Address.IP) || !ip.Gateway.Equal(net.ParseIP("10.22.0.1")) {
			t.Fatalf("cnitool add gave %s via %s", ip.Address.String(), ip.Gateway)
		}
		addrs = append(addrs, ip.Address.IP)
	}
	ping(t, c1, addrs[1])
	ping(t, c2, addrs[0])
	if len(l.MasqEntries(talkNet)) != 2 {
		t.Fatalf("masquerade entries %v; want 2", l.MasqEntries(talkNet))
	}
	_, err := cnitool("check", talkNet, c1)
	switch {
	case version == "" && (err == nil || !strings.Contains(err.Error(), `configuration version "" does not support the CHECK command`)):
		t.Fatalf("cnitool check on a version-less config: %v; want the runtime's refusal", err)
	case version != "" && err != nil:
		t.Fatal(err)
	}
	for _, c := range []string{c1, c2} {
		if _, err := cnitool("del", talkNet, c); err != nil {
			t.Fatal(err)
		}
		if nstest.LinkExists(t, c, "eth0") {
			t.Errorf("eth0 (and its address) still in %s after cnitool del", c)
		}
	}
	if got := l.MasqEntries(talkNet); len(got) != 0 {
		t.Fatalf("masquerade entries after del: %v", got)
	}
	if got := l.Reservations(talkNet); len(got) != 0 {
		t.Fatalf("reservations after del: %v", got)
	}
}
