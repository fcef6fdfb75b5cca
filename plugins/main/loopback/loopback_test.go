package loopback_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/knit-cni/knit/internal/nstest"
	"github.com/knit-cni/knit/pkg/cni"
)

func TestMain(m *testing.M) { nstest.Main(m) }

// refPlugins is where Debian's reference plugins live; they are the oracle.
const refPlugins = "/usr/lib/cni"

func conf(version string, extra ...string) []byte {
	s := `{"cniVersion":"` + version + `","name":"lonet","type":"loopback"`
	for _, e := range extra {
		s += "," + e
	}
	return []byte(s + "}")
}

func attachEnv(ctr string) map[string]string {
	return map[string]string{"CNI_CONTAINERID": "ctr1", "CNI_NETNS": ctr, "CNI_IFNAME": "eth0"}
}

func wantOK(t *testing.T, what string, r nstest.PluginRun) {
	t.Helper()
	if r.ExitCode != 0 {
		t.Fatalf("%s: exit %d: %s", what, r.ExitCode, r.Stdout)
	}
}

func wantError(t *testing.T, what string, r nstest.PluginRun, code uint, msgPart string) *cni.Error {
	t.Helper()
	if r.ExitCode == 0 {
		t.Fatalf("%s succeeded, want error code %d; stdout %s", what, code, r.Stdout)
	}
	var e cni.Error
	if err := json.Unmarshal(r.Stdout, &e); err != nil {
		t.Fatalf("%s: stdout is not an error object: %v\n%s", what, err, r.Stdout)
	}
	if e.Code != code || !strings.Contains(e.Error(), msgPart) {
		t.Fatalf("%s: got code %d %q, want code %d containing %q", what, e.Code, e.Error(), code, msgPart)
	}
	return &e
}

func TestLifecycleEveryVersion(t *testing.T) {
	nstest.RequireRoot(t)
	dir := nstest.Plugins(t)
	for _, v := range cni.AllVersions {
		t.Run(v, func(t *testing.T) {
			host, ctr := nstest.HostAndContainer(t, "lo")
			if nstest.LinkUp(t, ctr, "lo") {
				t.Fatal("lo is up in a fresh namespace")
			}
			env := attachEnv(ctr)
			add := nstest.Exec(t, host, dir, "loopback", "ADD", env, conf(v))
			wantOK(t, "ADD", add)
			if !nstest.LinkUp(t, ctr, "lo") {
				t.Fatal("lo is not up after ADD")
			}
			if nstest.LinkUp(t, host, "lo") {
				t.Fatal("ADD changed the host namespace's lo")
			}
			res, err := cni.ParseResult(add.Stdout, v)
			if err != nil {
				t.Fatalf("parsing ADD result: %v\n%s", err, add.Stdout)
			}
			var head struct {
				CNIVersion string `json:"cniVersion"`
			}
			_ = json.Unmarshal(add.Stdout, &head)
			if head.CNIVersion != v {
				t.Errorf("result printed as %q, want %q", head.CNIVersion, v)
			}
			var addrs []string
			for _, ip := range res.IPs {
				addrs = append(addrs, ip.Address.String())
			}
			if !slices.Equal(addrs, []string{"127.0.0.1/8", "::1/128"}) {
				t.Errorf("result addresses %v, want [127.0.0.1/8 ::1/128]", addrs)
			}
			if !slices.Equal(addrs, nstest.Addrs(t, ctr, "lo")) {
				t.Errorf("result addresses %v differ from lo's %v", addrs, nstest.Addrs(t, ctr, "lo"))
			}
			if cni.VersionAtLeast(v, cni.Version030) {
				if len(res.Interfaces) != 1 || res.Interfaces[0].Name != "lo" || res.Interfaces[0].Sandbox != ctr ||
					res.Interfaces[0].Mac != "00:00:00:00:00:00" {
					t.Errorf("interfaces %+v, want lo in %s", res.Interfaces, ctr)
				}
				for _, ip := range res.IPs {
					if ip.Interface == nil || *ip.Interface != 0 {
						t.Errorf("ip %s does not point at interface 0", ip.Address.String())
					}
				}
			}

			// CHECK exists from 0.4.0, with the ADD result as prevResult.
			checkConf := conf(v, `"prevResult":`+string(add.Stdout))
			if cni.VersionAtLeast(v, cni.Version040) {
				wantOK(t, "CHECK", nstest.Exec(t, host, dir, "loopback", "CHECK", env, checkConf))
			} else {
				wantError(t, "CHECK", nstest.Exec(t, host, dir, "loopback", "CHECK", env, checkConf), 1, "does not allow CHECK")
			}

			delConf := conf(v)
			if cni.VersionAtLeast(v, cni.Version040) {
				delConf = checkConf
			}
			wantOK(t, "DEL", nstest.Exec(t, host, dir, "loopback", "DEL", env, delConf))
			if nstest.LinkUp(t, ctr, "lo") {
				t.Fatal("lo is still up after DEL")
			}
			if cni.VersionAtLeast(v, cni.Version040) {
				wantError(t, "CHECK after DEL", nstest.Exec(t, host, dir, "loopback", "CHECK", env, checkConf),
					cni.ErrInternal, "loopback interface is down")
			}
			wantOK(t, "second DEL", nstest.Exec(t, host, dir, "loopback", "DEL", env, delConf))
		})
	}
}

// TestMatchesReference runs Debian's loopback and ours on the same input and
// compares the parsed results.
func TestMatchesReference(t *testing.T) {
	nstest.RequireRoot(t)
	if _, err := os.Stat(filepath.Join(refPlugins, "loopback")); err != nil {
		t.Skipf("reference plugins not installed: %v", err)
	}
	dir := nstest.Plugins(t)
	// Debian's build supports up to 1.0.0 and prints a 0.3-shaped result
	// for 0.1.0/0.2.0, so compare from 0.3.0.
	for _, v := range []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0"} {
		t.Run(v, func(t *testing.T) {
			host := nstest.New(t, "lrh")
			var results [2]*cni.Result
			for i, d := range []string{refPlugins, dir} {
				ctr := nstest.New(t, "lrc")
				add := nstest.Exec(t, host, d, "loopback", "ADD", attachEnv(ctr), conf(v))
				wantOK(t, d+" ADD", add)
				r, err := cni.ParseResult(add.Stdout, v)
				if err != nil {
					t.Fatalf("%s result: %v", d, err)
				}
				r.Interfaces[0].Sandbox = "SANDBOX"
				results[i] = r
			}
			ref, _ := results[0].Encode(cni.Version110)
			ours, _ := results[1].Encode(cni.Version110)
			if string(ref) != string(ours) {
				t.Errorf("results differ\nreference %s\nknit      %s", ref, ours)
			}
		})
	}
}

func TestChainedPassesPrevResultThrough(t *testing.T) {
	nstest.RequireRoot(t)
	dir := nstest.Plugins(t)
	host, ctr := nstest.HostAndContainer(t, "lch")
	prev := map[string]string{
		"1.1.0": `{"cniVersion":"1.1.0","interfaces":[{"name":"eth0","mac":"aa:bb:cc:dd:ee:ff","mtu":1400,"sandbox":"` + ctr + `"}],` +
			`"ips":[{"interface":0,"address":"10.9.0.2/24","gateway":"10.9.0.1"}],"routes":[{"dst":"0.0.0.0/0","gw":"10.9.0.1","table":0}],` +
			`"dns":{"nameservers":["10.9.0.1"]}}`,
		"0.4.0": `{"cniVersion":"0.4.0","interfaces":[{"name":"eth0","sandbox":"` + ctr + `"}],` +
			`"ips":[{"version":"4","interface":0,"address":"10.9.0.2/24"}],"dns":{}}`,
	}
	for v, p := range prev {
		add := nstest.Exec(t, host, dir, "loopback", "ADD", attachEnv(ctr), conf(v, `"prevResult":`+p))
		wantOK(t, "ADD "+v, add)
		got, err := cni.ParseResult(add.Stdout, v)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := cni.ParseResult([]byte(p), v)
		g, _ := got.Encode(v)
		w, _ := want.Encode(v)
		if string(g) != string(w) {
			t.Errorf("%s: chained result changed\n got %s\nwant %s", v, g, w)
		}
		if !nstest.LinkUp(t, ctr, "lo") {
			t.Errorf("%s: chained ADD did not set lo up", v)
		}
		// CHECK with a prevResult that does not mention lo only checks lo is up.
		wantOK(t, "CHECK "+v, nstest.Exec(t, host, dir, "loopback", "CHECK", attachEnv(ctr), conf(v, `"prevResult":`+p)))
	}
}

func TestCheckMissingAddress(t *testing.T) {
	nstest.RequireRoot(t)
	dir := nstest.Plugins(t)
	host, ctr := nstest.HostAndContainer(t, "lck")
	wantOK(t, "ADD", nstest.Exec(t, host, dir, "loopback", "ADD", attachEnv(ctr), conf("1.1.0")))
	prev := fmt.Sprintf(`{"cniVersion":"1.1.0","interfaces":[{"name":"lo","sandbox":%q}],`+
		`"ips":[{"interface":0,"address":"127.0.0.1/8"},{"interface":0,"address":"127.0.0.9/8"}]}`, ctr)
	wantError(t, "CHECK", nstest.Exec(t, host, dir, "loopback", "CHECK", attachEnv(ctr), conf("1.1.0", `"prevResult":`+prev)),
		cni.ErrInternal, "loopback address 127.0.0.9/8 is missing")
}

func TestMissingNamespace(t *testing.T) {
	nstest.RequireRoot(t)
	dir := nstest.Plugins(t)
	host := nstest.New(t, "lmh")
	gone := filepath.Join(t.TempDir(), "no-such-netns")
	env := attachEnv(gone)

	wantError(t, "ADD", nstest.Exec(t, host, dir, "loopback", "ADD", env, conf("1.1.0")),
		cni.ErrInvalidEnvironmentVariables, "CNI_NETNS does not exist")
	wantError(t, "CHECK", nstest.Exec(t, host, dir, "loopback", "CHECK", env, conf("1.1.0")),
		cni.ErrInvalidEnvironmentVariables, "CNI_NETNS does not exist")
	wantOK(t, "DEL of a gone namespace", nstest.Exec(t, host, dir, "loopback", "DEL", env, conf("1.1.0")))

	env["CNI_NETNS"] = ""
	wantOK(t, "DEL without CNI_NETNS", nstest.Exec(t, host, dir, "loopback", "DEL", env, conf("1.1.0")))

	// A leftover mount point (a plain file) is a namespace that is gone.
	plain := filepath.Join(t.TempDir(), "unmounted")
	if err := os.WriteFile(plain, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	env["CNI_NETNS"] = plain
	wantOK(t, "DEL of an unmounted namespace", nstest.Exec(t, host, dir, "loopback", "DEL", env, conf("1.1.0")))
	wantError(t, "ADD into a plain file", nstest.Exec(t, host, dir, "loopback", "ADD", env, conf("1.1.0")),
		cni.ErrInvalidEnvironmentVariables, "not a network namespace")
}

func TestOwnNamespaceRefused(t *testing.T) {
	nstest.RequireRoot(t)
	dir := nstest.Plugins(t)
	host := nstest.New(t, "loh")
	// The plugin runs in host; passing host as CNI_NETNS must not touch it.
	for _, cmd := range []string{"ADD", "DEL"} {
		wantError(t, cmd, nstest.Exec(t, host, dir, "loopback", cmd, attachEnv(host), conf("1.1.0")),
			cni.ErrInvalidNetNS, "plugin's own network namespace")
		if nstest.LinkUp(t, host, "lo") {
			t.Fatalf("%s changed lo in the plugin's own namespace", cmd)
		}
	}
}

func TestVersionAndAbout(t *testing.T) {
	nstest.RequireRoot(t)
	dir := nstest.Plugins(t)
	host := nstest.New(t, "lvh")
	r := nstest.Exec(t, host, dir, "loopback", "VERSION", map[string]string{"CNI_PATH": ""}, nil)
	wantOK(t, "VERSION", r)
	vi, err := cni.ParseVersionInfo(r.Stdout)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(vi.SupportedVersions, cni.AllVersions) {
		t.Errorf("supported %v, want %v", vi.SupportedVersions, cni.AllVersions)
	}
	about := nstest.Exec(t, host, dir, "loopback", "", nil, nil)
	wantOK(t, "about", about)
	if !strings.Contains(string(about.Stderr), "loopback") || !strings.Contains(string(about.Stderr), "1.1.0") {
		t.Errorf("about banner %q", about.Stderr)
	}
}

// A non-loopback address on lo is refused, after lo was set up (as the
// reference plugin does).
func TestNonLoopbackAddressRefused(t *testing.T) {
	nstest.RequireRoot(t)
	dir := nstest.Plugins(t)
	host, ctr := nstest.HostAndContainer(t, "lna")
	nstest.Run(t, ctr, "ip", "addr", "add", "10.77.0.1/24", "dev", "lo")
	wantError(t, "ADD", nstest.Exec(t, host, dir, "loopback", "ADD", attachEnv(ctr), conf("1.1.0")),
		cni.ErrInternal, "lo has a non-loopback address 10.77.0.1/24")
	if !nstest.LinkUp(t, ctr, "lo") {
		t.Fatal("lo is not up after the refused ADD")
	}
}
