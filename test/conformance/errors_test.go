package conformance

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/knit-cni/knit/internal/nstest"
)

// errorCase is one bad invocation of the loopback plugin.
type errorCase struct {
	name  string
	env   map[string]string // changes to the base environment; "-" removes
	stdin string
	code  uint
	msg   string // substring of knit's "msg; details"
	// refCode is the reference plugin's code for the same input, when it
	// is meant to agree; 0 means "not compared" (a documented divergence).
	refCode uint
}

var errorCases = []errorCase{
	{name: "missing container ID and ifname", env: map[string]string{"CNI_CONTAINERID": "-", "CNI_IFNAME": "-"},
		code: 4, msg: "required env variables [CNI_CONTAINERID,CNI_IFNAME] missing", refCode: 4},
	{name: "missing netns on ADD", env: map[string]string{"CNI_NETNS": "-"},
		code: 4, msg: "required env variables [CNI_NETNS] missing", refCode: 4},
	{name: "unknown command", env: map[string]string{"CNI_COMMAND": "FROB"},
		code: 4, msg: "unknown CNI_COMMAND: FROB", refCode: 4},
	{name: "bad JSON", stdin: `{"cniVersion":"1.0.0","name":"errnet",`,
		code: 6, msg: "error decoding network config from stdin", refCode: 6},
	{name: "unsupported version", stdin: `{"cniVersion":"9.9.9","name":"errnet","type":"loopback"}`,
		code: 1, msg: `incompatible CNI versions; config is "9.9.9", plugin supports ["0.1.0"`, refCode: 1},
	{name: "CHECK on a 0.3.1 config", env: map[string]string{"CNI_COMMAND": "CHECK"},
		stdin: `{"cniVersion":"0.3.1","name":"errnet","type":"loopback"}`,
		code:  1, msg: "config version does not allow CHECK", refCode: 1},
	{name: "GC on a 1.0.0 config", env: map[string]string{"CNI_COMMAND": "GC"},
		code: 1, msg: "config version does not allow GC"},
	{name: "prevResult of another result family",
		stdin: `{"cniVersion":"1.0.0","name":"errnet","type":"loopback","prevResult":{"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.0.0.2/24"}]}}`,
		code:  1, msg: "prevResult version does not match the config version"},
	{name: "invalid container ID", env: map[string]string{"CNI_CONTAINERID": "-bad"},
		code: 4, msg: "invalid characters in containerID; -bad", refCode: 4},
	{name: "ifname too long", env: map[string]string{"CNI_IFNAME": "abcdefghijklmnop"},
		code: 4, msg: "interface name is too long", refCode: 4},
	{name: "ifname with a space", env: map[string]string{"CNI_IFNAME": "a b"},
		code: 4, msg: "interface name contains / or : or whitespace characters", refCode: 4},
	{name: "invalid network name", stdin: `{"cniVersion":"1.0.0","name":"_errnet","type":"loopback"}`,
		code: 7, msg: "invalid characters found in network name; _errnet", refCode: 7},
	{name: "missing network name", stdin: `{"cniVersion":"1.0.0","type":"loopback"}`,
		code: 7, msg: "missing network name", refCode: 7},
}

func environ(base map[string]string, changes map[string]string) []string {
	m := map[string]string{"PATH": os.Getenv("PATH")}
	for k, v := range base {
		m[k] = v
	}
	for k, v := range changes {
		if v == "-" {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	var out []string
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// TestErrorCases runs bad invocations of knit's loopback through the
// reference invoke package, and the same through Debian's loopback: each
// gets the spec code and a message naming the problem, and nothing changes.
func TestErrorCases(t *testing.T) {
	nstest.RequireRoot(t)
	dir := nstest.Plugins(t)
	_, refErr := os.Stat(filepath.Join(refPlugins, "loopback"))
	host, ctr := nstest.HostAndContainer(t, "ce")
	base := map[string]string{
		"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "err-ctr", "CNI_NETNS": ctr, "CNI_IFNAME": "eth0",
	}
	for _, tc := range errorCases {
		t.Run(tc.name, func(t *testing.T) {
			stdin := tc.stdin
			if stdin == "" {
				stdin = `{"cniVersion":"1.0.0","name":"errnet","type":"loopback"}`
			}
			run := func(pluginDir string) (*types.Error, []byte) {
				var out []byte
				err := inHost(t, host, func(ctx context.Context) error {
					var err error
					env := environ(base, tc.env)
					env = append(env, "CNI_PATH="+pluginDir)
					out, err = (&invoke.RawExec{Stderr: os.Stderr}).ExecPlugin(ctx, filepath.Join(pluginDir, "loopback"), []byte(stdin), env)
					return err
				})
				var e *types.Error
				if err == nil || !errors.As(err, &e) {
					t.Fatalf("%s: got %v (stdout %s), want a CNI error object", pluginDir, err, out)
				}
				return e, out
			}
			e, _ := run(dir)
			if e.Code != tc.code || !strings.Contains(e.Error(), tc.msg) {
				t.Errorf("knit: code %d %q, want code %d containing %q", e.Code, e.Error(), tc.code, tc.msg)
			}
			if tc.refCode != 0 && refErr == nil {
				if re, _ := run(refPlugins); re.Code != tc.refCode {
					t.Errorf("reference: code %d %q, want %d", re.Code, re.Error(), tc.refCode)
				}
			}
			if nstest.LinkUp(t, ctr, "lo") || nstest.LinkUp(t, host, "lo") {
				t.Fatal("a refused invocation changed lo")
			}
		})
	}
}

// TestNoCommandPrintsAbout: without CNI_COMMAND both plugins print their
// about banner on stderr, exit 0 and change nothing.
func TestNoCommandPrintsAbout(t *testing.T) {
	nstest.RequireRoot(t)
	dir := nstest.Plugins(t)
	host, ctr := nstest.HostAndContainer(t, "cab")
	r := nstest.Exec(t, host, dir, "loopback", "", map[string]string{"CNI_NETNS": ctr}, nil)
	if r.ExitCode != 0 || len(r.Stdout) != 0 || !strings.Contains(string(r.Stderr), "CNI protocol versions supported: 0.1.0") {
		t.Errorf("exit %d stdout %q stderr %q", r.ExitCode, r.Stdout, r.Stderr)
	}
	if nstest.LinkUp(t, ctr, "lo") {
		t.Error("lo changed")
	}
}
