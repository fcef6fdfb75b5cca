package static

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"

	"github.com/knit-cni/knit/internal/nstest"
	"github.com/knit-cni/knit/pkg/cni"
	"github.com/knit-cni/knit/pkg/cni/skel"
)

const asPluginEnv = "KNIT_TEST_RUN_AS_STATIC"

func TestMain(m *testing.M) {
	if os.Getenv(asPluginEnv) == "1" {
		skel.Main(Plugin, Info)
	}
	code := m.Run()
	nstest.RemovePlugins()
	os.Exit(code)
}

type outcome struct {
	code   int
	stdout string
}

func env(cmd, args string) map[string]string {
	return map[string]string{
		"CNI_COMMAND": cmd, "CNI_CONTAINERID": "ctr1", "CNI_NETNS": "/var/run/netns/knit-unused",
		"CNI_IFNAME": "eth0", "CNI_ARGS": args, "CNI_PATH": "/nonexistent",
	}
}

func run(cmd, args, conf string) outcome {
	e := env(cmd, args)
	var out bytes.Buffer
	code := skel.Execute(context.Background(), Plugin, Info, skel.IO{
		Getenv: func(k string) string { return e[k] }, Environ: func() []string { return nil },
		Stdin: strings.NewReader(conf), Stdout: &out, Stderr: os.Stderr,
	})
	return outcome{code, out.String()}
}

// runBinary runs bin (this test binary as the plugin when bin is "").
func runBinary(t *testing.T, bin, cmd, args, conf string) outcome {
	t.Helper()
	environ := []string{"PATH=/usr/bin:/bin"}
	if bin == "" {
		bin = os.Args[0]
		environ = append(environ, asPluginEnv+"=1", "GORACE=atexit_sleep_ms=0")
	}
	for k, v := range env(cmd, args) {
		environ = append(environ, k+"="+v)
	}
	c := exec.Command(bin)
	c.Env = environ
	c.Stdin = strings.NewReader(conf)
	out, err := c.Output()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return outcome{code, string(out)}
}

func conf(version, ipam string, extra ...string) string {
	s := `{"cniVersion":"` + version + `","name":"st","type":"ptp","ipam":{"type":"static"`
	if ipam != "" {
		s += "," + ipam
	}
	s += "}"
	for _, e := range extra {
		s += "," + e
	}
	return s + "}"
}

func ips(t *testing.T, o outcome) []string {
	t.Helper()
	if o.code != 0 {
		t.Fatalf("plugin failed: %s", o.stdout)
	}
	r, err := cni.ParseResult([]byte(o.stdout), "")
	if err != nil {
		t.Fatalf("bad result %q: %v", o.stdout, err)
	}
	var out []string
	for _, ip := range r.IPs {
		s := ip.Address.String()
		if ip.Gateway != nil {
			s += " gw " + ip.Gateway.String()
		}
		out = append(out, s)
	}
	return out
}

func TestAddSources(t *testing.T) {
	base := `"addresses":[{"address":"10.10.0.5/24","gateway":"10.10.0.1"},{"address":"fd10::5/64","gateway":"fd10::1"}]`
	for _, tc := range []struct {
		name, args, conf string
		want             []string
	}{
		{"config dual stack", "", conf("1.0.0", base),
			[]string{"10.10.0.5/24 gw 10.10.0.1", "fd10::5/64 gw fd10::1"}},
		{"CNI_ARGS IP appends", "IP=10.20.0.7/16,fd20::7/64", conf("1.0.0", base),
			[]string{"10.10.0.5/24 gw 10.10.0.1", "fd10::5/64 gw fd10::1", "10.20.0.7/16", "fd20::7/64"}},
		{"CNI_ARGS GATEWAY matched by subnet", "IP=10.20.0.7/16;GATEWAY=10.20.0.1,fd10::fe", conf("1.0.0", base),
			[]string{"10.10.0.5/24 gw 10.10.0.1", "fd10::5/64 gw fd10::fe", "10.20.0.7/16 gw 10.20.0.1"}},
		{"args.cni.ips replace", "", conf("1.0.0", base, `"args":{"cni":{"ips":["10.30.0.3/24"]}}`),
			[]string{"10.30.0.3/24"}},
		{"runtimeConfig.ips replace args too", "", conf("1.0.0", base, `"args":{"cni":{"ips":["10.30.0.3/24"]}}`, `"runtimeConfig":{"ips":["10.40.0.4/24","fd40::4/64"]}`),
			[]string{"10.40.0.4/24", "fd40::4/64"}},
		{"runtime ips replace CNI_ARGS too", "IP=10.50.0.5/24;GATEWAY=10.50.0.1", conf("1.0.0", base, `"runtimeConfig":{"ips":["10.40.0.4/24"]}`),
			[]string{"10.40.0.4/24"}},
		{"only CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=x;IP=192.168.1.9/24", conf("0.2.0", ""),
			[]string{"192.168.1.9/24"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ips(t, run("ADD", tc.args, tc.conf)); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestRoutesAndDNS(t *testing.T) {
	o := run("ADD", "", conf("1.1.0", `"addresses":[{"address":"10.1.1.2/24","gateway":"10.1.1.1"}],"routes":[{"dst":"0.0.0.0/0"},{"dst":"10.9.0.0/16","gw":"10.1.1.254"}],"dns":{"nameservers":["10.1.1.53"],"domain":"example.org","search":["example.org"]}`))
	if o.code != 0 {
		t.Fatal(o.stdout)
	}
	r, err := cni.ParseResult([]byte(o.stdout), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Routes) != 2 || r.Routes[1].GW.String() != "10.1.1.254" || r.DNS.Domain != "example.org" || r.DNS.Nameservers[0] != "10.1.1.53" {
		t.Fatalf("routes/dns not echoed: %s", o.stdout)
	}
}

func TestBadInput(t *testing.T) {
	for _, tc := range []struct {
		name, args, conf string
		code             uint
		msg              string
	}{
		{"no ipam", "", `{"cniVersion":"1.0.0","name":"st","type":"static"}`, 7, `missing "ipam"`},
		{"bad cidr", "", conf("1.0.0", `"addresses":[{"address":"10.1.1.300/24"}]`), 7, "ipam.addresses[0]"},
		{"no prefix", "", conf("1.0.0", `"addresses":[{"address":"10.1.1.3"}]`), 7, "prefix length"},
		{"bad gateway", "", conf("1.0.0", `"addresses":[{"address":"10.1.1.3/24","gateway":"nope"}]`), 7, "gateway \"nope\""},
		{"gateway family", "", conf("1.0.0", `"addresses":[{"address":"10.1.1.3/24","gateway":"fd00::1"}]`), 7, "different IP families"},
		{"GATEWAY unmatched", "IP=10.2.0.2/24;GATEWAY=10.3.0.1", conf("1.0.0", ""), 7, "10.3.0.1 is in none"},
		{"CNI_ARGS bad IP", "IP=10.2.0.2", conf("1.0.0", ""), 7, "CNI_ARGS IP="},
		{"unknown CNI_ARGS", "FOO=1", conf("1.0.0", ""), 4, "unknown args"},
		{"two v4 at 0.2.0", "", conf("0.2.0", `"addresses":[{"address":"10.1.1.3/24"},{"address":"10.1.2.3/24"}]`), 7, "more than one address per IP family"},
		{"duplicate", "IP=10.1.1.3/24", conf("1.0.0", `"addresses":[{"address":"10.1.1.3/24"}]`), 7, "already given by ipam.addresses[0]"},
		{"nothing", "", conf("1.0.0", ""), 7, "no addresses"},
		{"route without dst", "", conf("1.0.0", `"addresses":[{"address":"10.1.1.3/24"}],"routes":[{"gw":"10.1.1.1"}]`), 6, "route dst"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := run("ADD", tc.args, tc.conf)
			var e cni.Error
			if o.code == 0 || json.Unmarshal([]byte(o.stdout), &e) != nil {
				t.Fatalf("want error, got %s", o.stdout)
			}
			if e.Code != tc.code || !strings.Contains(e.Error(), tc.msg) {
				t.Fatalf("got %d %q, want %d containing %q", e.Code, e.Error(), tc.code, tc.msg)
			}
		})
	}
}

func TestDelAndCheck(t *testing.T) {
	ipam := `"addresses":[{"address":"10.10.0.5/24","gateway":"10.10.0.1"},{"address":"fd10::5/64"}]`
	if o := run("DEL", "", conf("1.0.0", ipam)); o.code != 0 || o.stdout != "" {
		t.Fatalf("DEL: %d %s", o.code, o.stdout)
	}
	good := `"prevResult":{"cniVersion":"1.0.0","ips":[{"address":"10.10.0.5/24","gateway":"10.10.0.1"},{"address":"fd10::5/64"}]}`
	if o := run("CHECK", "", conf("1.0.0", ipam, good)); o.code != 0 {
		t.Fatalf("CHECK of a matching result: %s", o.stdout)
	}
	for name, prev := range map[string]string{
		"missing v6":    `{"cniVersion":"1.0.0","ips":[{"address":"10.10.0.5/24","gateway":"10.10.0.1"}]}`,
		"wrong prefix":  `{"cniVersion":"1.0.0","ips":[{"address":"10.10.0.5/16","gateway":"10.10.0.1"},{"address":"fd10::5/64"}]}`,
		"wrong gateway": `{"cniVersion":"1.0.0","ips":[{"address":"10.10.0.5/24","gateway":"10.10.0.2"},{"address":"fd10::5/64"}]}`,
	} {
		if o := run("CHECK", "", conf("1.0.0", ipam, `"prevResult":`+prev)); o.code == 0 || !strings.Contains(o.stdout, `"code": 3`) {
			t.Errorf("CHECK with %s: %d %s", name, o.code, o.stdout)
		}
	}
	if o := run("CHECK", "", conf("1.0.0", ipam)); o.code == 0 || !strings.Contains(o.stdout, "prevResult") {
		t.Errorf("CHECK without prevResult: %s", o.stdout)
	}
}

// The reference plugin (Debian's build) and knit give the same result for
// the same input, in every result version.
func TestSameAsReference(t *testing.T) {
	const ref = "/usr/lib/cni/static"
	if _, err := os.Stat(ref); err != nil {
		t.Skipf("reference static not installed: %v", err)
	}
	ipam := `"addresses":[{"address":"10.10.0.5/24","gateway":"10.10.0.1"},{"address":"fd10::5/64","gateway":"fd10::1"}],"routes":[{"dst":"0.0.0.0/0"}],"dns":{"nameservers":["10.10.0.53"]}`
	for _, tc := range []struct{ version, args, extra string }{
		{"1.0.0", "", ""},
		{"0.4.0", "IP=10.20.0.7/16;GATEWAY=10.20.0.1", ""},
		{"0.3.1", "", `"args":{"cni":{"ips":["10.30.0.3/24"]}}`},
		{"1.0.0", "IP=fd50::2/64", `"runtimeConfig":{"ips":["10.40.0.4/24"]}`},
		{"0.2.0", "", `"runtimeConfig":{"ips":["10.40.0.4/24"]}`},
	} {
		var extra []string
		if tc.extra != "" {
			extra = append(extra, tc.extra)
		}
		c := conf(tc.version, ipam, extra...)
		theirs := runBinary(t, ref, "ADD", tc.args, c)
		ours := runBinary(t, "", "ADD", tc.args, c)
		if theirs.code != 0 || ours.code != 0 {
			t.Fatalf("%v: reference %d %s, knit %d %s", tc, theirs.code, theirs.stdout, ours.code, ours.stdout)
		}
		var a, b any
		json.Unmarshal([]byte(theirs.stdout), &a)
		json.Unmarshal([]byte(ours.stdout), &b)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%v:\nreference %s\nknit      %s", tc, theirs.stdout, ours.stdout)
		}
	}
}
