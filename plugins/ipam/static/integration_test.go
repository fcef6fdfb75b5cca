package static

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/knit-cni/knit/internal/nstest"
	"github.com/knit-cni/knit/pkg/cni"
)

// static behind a real main plugin (ptp) in test namespaces: dual-stack
// addresses land on the container interface, CNI_ARGS override them, CHECK
// passes through ptp, and DEL leaves nothing.
func TestWithPtp(t *testing.T) {
	nstest.RequireRoot(t)
	host, ctr := nstest.HostAndContainer(t, "st")
	plugins := nstest.Plugins(t)
	conf := []byte(`{"cniVersion":"1.1.0","name":"stnet","type":"ptp","ipam":{"type":"static",
		"addresses":[{"address":"10.61.0.5/24","gateway":"10.61.0.1"},{"address":"fd61::5/64","gateway":"fd61::1"}],
		"routes":[{"dst":"0.0.0.0/0"}]}}`)
	env := map[string]string{"CNI_CONTAINERID": "st1", "CNI_NETNS": ctr, "CNI_IFNAME": "eth0",
		"CNI_ARGS": "IgnoreUnknown=1;IP=10.62.0.9/24"}
	r := nstest.Exec(t, host, plugins, "ptp", "ADD", env, conf)
	if r.ExitCode != 0 {
		t.Fatalf("ADD: %s", r.Stdout)
	}
	got := nstest.Addrs(t, ctr, "eth0")
	for _, want := range []string{"10.61.0.5/24", "10.62.0.9/24", "fd61::5/64"} {
		if !slices.Contains(got, want) {
			t.Fatalf("container eth0 has %v, want %s among them", got, want)
		}
	}
	res, err := cni.ParseResult(r.Stdout, "1.1.0")
	if err != nil {
		t.Fatal(err)
	}
	withPrev := func(res []byte) []byte {
		var m map[string]any
		json.Unmarshal(conf, &m)
		var p any
		json.Unmarshal(res, &p)
		m["prevResult"] = p
		out, _ := json.Marshal(m)
		return out
	}
	if c := nstest.Exec(t, host, plugins, "ptp", "CHECK", env, withPrev(r.Stdout)); c.ExitCode != 0 {
		t.Fatalf("CHECK: %s", c.Stdout)
	}
	// A result that lost the configured IPv6 address fails static's CHECK.
	var kept []*cni.IPConfig
	for _, ip := range res.IPs {
		if ip.IsV4() {
			kept = append(kept, ip)
		}
	}
	res.IPs = kept
	damaged, _ := res.Encode("1.1.0")
	if c := nstest.Exec(t, host, plugins, "ptp", "CHECK", env, withPrev(damaged)); c.ExitCode == 0 || !strings.Contains(string(c.Stdout), "fd61::5/64") {
		t.Fatalf("CHECK of a result without fd61::5 passed or did not name it: %s", c.Stdout)
	}
	if d := nstest.Exec(t, host, plugins, "ptp", "DEL", env, conf); d.ExitCode != 0 {
		t.Fatalf("DEL: %s", d.Stdout)
	}
	if nstest.LinkExists(t, ctr, "eth0") {
		t.Fatal("eth0 still in the container after DEL")
	}
}
