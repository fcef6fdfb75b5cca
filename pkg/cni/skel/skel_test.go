package skel

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/knit-cni/knit/pkg/cni"
)

// fakePlugin records every call and answers as configured.
type fakePlugin struct {
	calls  []string
	last   *Request
	result *cni.Result
	err    error
}

func (f *fakePlugin) record(cmd string, req *Request) {
	f.calls = append(f.calls, cmd)
	f.last = req
}

func (f *fakePlugin) Add(_ context.Context, req *Request) (*cni.Result, error) {
	f.record(CmdAdd, req)
	return f.result, f.err
}

func (f *fakePlugin) Del(_ context.Context, req *Request) error {
	f.record(CmdDel, req)
	return f.err
}

func (f *fakePlugin) Check(_ context.Context, req *Request) error {
	f.record(CmdCheck, req)
	return f.err
}

// fakeGCPlugin also implements GC and STATUS.
type fakeGCPlugin struct{ fakePlugin }

func (f *fakeGCPlugin) GC(_ context.Context, req *Request) error {
	f.record(CmdGC, req)
	return f.err
}

func (f *fakeGCPlugin) Status(_ context.Context, req *Request) error {
	f.record(CmdStatus, req)
	return f.err
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

// invocation is one run of Execute.
type invocation struct {
	env   map[string]string
	stdin string
	// readErr makes stdin unreadable.
	readErr bool
}

type outcome struct {
	code   int
	stdout string
	stderr string
}

func execute(t *testing.T, p Plugin, info Info, in invocation) outcome {
	t.Helper()
	var stdout, stderr bytes.Buffer
	pio := IO{
		Getenv: func(k string) string { return in.env[k] },
		Environ: func() []string {
			var out []string
			for k, v := range in.env {
				out = append(out, k+"="+v)
			}
			return out
		},
		Stdin:  strings.NewReader(in.stdin),
		Stdout: &stdout,
		Stderr: &stderr,
	}
	if in.readErr {
		pio.Stdin = failingReader{}
	}
	code := Execute(context.Background(), p, info, pio)
	return outcome{code, stdout.String(), stderr.String()}
}

// decodeError parses stdout as the spec's error object.
func decodeError(t *testing.T, out outcome) *cni.Error {
	t.Helper()
	if out.code == 0 {
		t.Fatalf("exit code 0, want failure; stdout %q", out.stdout)
	}
	var e cni.Error
	if err := json.Unmarshal([]byte(out.stdout), &e); err != nil {
		t.Fatalf("stdout is not an error object: %v\n%s", err, out.stdout)
	}
	return &e
}

// env builds a full, valid environment for cmd, then applies changes: a
// value of "-" removes the variable.
func env(cmd string, changes ...string) map[string]string {
	m := map[string]string{
		"CNI_COMMAND":     cmd,
		"CNI_CONTAINERID": "c1",
		"CNI_NETNS":       "/var/run/netns/knit-skel-test-does-not-exist",
		"CNI_IFNAME":      "eth0",
		"CNI_PATH":        "/opt/cni/bin:/usr/lib/cni",
		"CNI_ARGS":        "IgnoreUnknown=1;K8S_POD_NAME=p",
	}
	for _, c := range changes {
		k, v, _ := strings.Cut(c, "=")
		if v == "-" {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	return m
}

func conf(version string, extra ...string) string {
	s := `{"cniVersion":"` + version + `","name":"net1","type":"fake"`
	for _, e := range extra {
		s += "," + e
	}
	return s + "}"
}

var testInfo = Info{Name: "fake", About: "fake plugin for tests"}

func sampleResult() *cni.Result {
	v4, _ := cni.ParseCIDR("10.1.2.3/24")
	v6, _ := cni.ParseCIDR("fd00::3/64")
	def, _ := cni.ParseCIDR("0.0.0.0/0")
	return &cni.Result{
		CNIVersion: cni.Version110,
		Interfaces: []*cni.Interface{{Name: "eth0", Mac: "aa:bb:cc:dd:ee:ff", MTU: 1400, Sandbox: "/x"}},
		IPs: []*cni.IPConfig{
			{Interface: cni.Int(0), Address: *v4, Gateway: net.ParseIP("10.1.2.1")},
			{Interface: cni.Int(0), Address: *v6},
		},
		Routes: []*cni.Route{{Dst: *def, GW: net.ParseIP("10.1.2.1"), MTU: 1300}},
	}
}

func TestErrors(t *testing.T) {
	allVersions := fmt.Sprintf("%q", cni.AllVersions)
	tests := []struct {
		name    string
		in      invocation
		info    *Info
		code    uint
		msg     string // exact
		details string // substring
	}{
		{name: "ADD missing container ID and ifname",
			in:   invocation{env: env(CmdAdd, "CNI_CONTAINERID=-", "CNI_IFNAME=-"), stdin: conf("1.1.0")},
			code: 4, msg: "required env variables [CNI_CONTAINERID,CNI_IFNAME] missing"},
		{name: "ADD missing everything",
			in:   invocation{env: map[string]string{"CNI_COMMAND": CmdAdd}, stdin: conf("1.1.0")},
			code: 4, msg: "required env variables [CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME] missing"},
		{name: "CHECK missing netns",
			in:   invocation{env: env(CmdCheck, "CNI_NETNS="), stdin: conf("1.1.0")},
			code: 4, msg: "required env variables [CNI_NETNS] missing"},
		{name: "DEL missing ifname",
			in:   invocation{env: env(CmdDel, "CNI_IFNAME=-", "CNI_NETNS=-"), stdin: conf("1.1.0")},
			code: 4, msg: "required env variables [CNI_IFNAME] missing"},
		{name: "GC missing CNI_PATH",
			in:   invocation{env: map[string]string{"CNI_COMMAND": CmdGC}, stdin: conf("1.1.0")},
			code: 4, msg: "required env variables [CNI_PATH] missing"},
		{name: "no command and no about text",
			in:   invocation{env: map[string]string{}, stdin: conf("1.1.0")},
			info: &Info{Name: "fake"},
			code: 4, msg: "required env variables [CNI_COMMAND] missing"},
		{name: "unknown command",
			in:   invocation{env: env("FROB"), stdin: conf("1.1.0")},
			code: 4, msg: "unknown CNI_COMMAND: FROB", details: "ADD, DEL, CHECK, GC, STATUS, VERSION"},
		{name: "lower-case command is unknown",
			in:   invocation{env: env("add"), stdin: conf("1.1.0")},
			code: 4, msg: "unknown CNI_COMMAND: add"},
		{name: "bad JSON",
			in:   invocation{env: env(CmdAdd), stdin: `{"cniVersion":"1.1.0","name":`},
			code: 6, msg: "error decoding network config from stdin"},
		{name: "empty stdin on ADD",
			in:   invocation{env: env(CmdAdd), stdin: ""},
			code: 6, msg: "error decoding network config from stdin"},
		{name: "shared key of the wrong type",
			in:   invocation{env: env(CmdAdd), stdin: conf("1.1.0", `"ipam":"host-local"`)},
			code: 6, msg: "error decoding network config from stdin", details: "ipam"},
		{name: "unreadable stdin",
			in:   invocation{env: env(CmdAdd), readErr: true},
			code: 5, msg: "error reading from stdin", details: "disk on fire"},
		{name: "missing network name",
			in:   invocation{env: env(CmdAdd), stdin: `{"cniVersion":"1.1.0","type":"fake"}`},
			code: 7, msg: "missing network name:"},
		{name: "invalid network name",
			in:   invocation{env: env(CmdStatus), stdin: `{"cniVersion":"1.1.0","name":"_net","type":"fake"}`},
			code: 7, msg: "invalid characters found in network name", details: "_net"},
		{name: "invalid container ID",
			in:   invocation{env: env(CmdAdd, "CNI_CONTAINERID=-bad"), stdin: conf("1.1.0")},
			code: 4, msg: "invalid characters in containerID", details: "-bad"},
		{name: "container ID with percent on DEL",
			in:   invocation{env: env(CmdDel, "CNI_CONTAINERID=x%y"), stdin: conf("1.1.0")},
			code: 4, msg: "invalid characters in containerID"},
		{name: "ifname too long",
			in:   invocation{env: env(CmdAdd, "CNI_IFNAME=abcdefghijklmnop"), stdin: conf("1.1.0")},
			code: 4, msg: "interface name is too long", details: "less than 16"},
		{name: "ifname with slash",
			in:   invocation{env: env(CmdCheck, "CNI_IFNAME=a/b"), stdin: conf("1.1.0")},
			code: 4, msg: "interface name contains / or : or whitespace characters"},
		{name: "ifname dot-dot",
			in:   invocation{env: env(CmdDel, "CNI_IFNAME=.."), stdin: conf("1.1.0")},
			code: 4, msg: "interface name is . or .."},
		{name: "unsupported config version",
			in:   invocation{env: env(CmdAdd), stdin: conf("9.9.9")},
			code: 1, msg: "incompatible CNI versions", details: `config is "9.9.9", plugin supports ` + allVersions},
		{name: "version the plugin does not list",
			in:   invocation{env: env(CmdAdd), stdin: conf("0.3.1")},
			info: &Info{Name: "fake", Versions: []string{"0.4.0", "1.0.0"}},
			code: 1, msg: "incompatible CNI versions", details: `config is "0.3.1", plugin supports ["0.4.0" "1.0.0"]`},
		{name: "absent version is 0.1.0",
			in:   invocation{env: env(CmdAdd), stdin: `{"name":"net1","type":"fake"}`},
			info: &Info{Name: "fake", Versions: []string{"0.4.0", "1.0.0"}},
			code: 1, msg: "incompatible CNI versions", details: `config is "0.1.0"`},
		{name: "CHECK on 0.3.1",
			in:   invocation{env: env(CmdCheck), stdin: conf("0.3.1")},
			code: 1, msg: "config version does not allow CHECK", details: "0.4.0 or later"},
		{name: "CHECK on absent version",
			in:   invocation{env: env(CmdCheck), stdin: `{"name":"net1","type":"fake"}`},
			code: 1, msg: "config version does not allow CHECK"},
		{name: "GC on 1.0.0",
			in:   invocation{env: env(CmdGC), stdin: conf("1.0.0")},
			code: 1, msg: "config version does not allow GC", details: "1.1.0 or later"},
		{name: "STATUS on 0.4.0",
			in:   invocation{env: env(CmdStatus), stdin: conf("0.4.0")},
			code: 1, msg: "config version does not allow STATUS"},
		{name: "prevResult of another family",
			in: invocation{env: env(CmdAdd), stdin: conf("1.1.0",
				`"prevResult":{"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.0.0.2/24"}]}`)},
			code: 1, msg: "prevResult version does not match the config version", details: `"0.4.0"`},
		{name: "0.2.0 prevResult in a 0.4.0 config",
			in: invocation{env: env(CmdCheck), stdin: conf("0.4.0",
				`"prevResult":{"cniVersion":"0.2.0","ip4":{"ip":"10.0.0.2/24"}}`)},
			code: 1, msg: "prevResult version does not match the config version"},
		{name: "undecodable prevResult",
			in: invocation{env: env(CmdAdd), stdin: conf("1.1.0",
				`"prevResult":{"cniVersion":"1.1.0","ips":[{"address":"not-an-ip"}]}`)},
			code: 6, msg: "could not parse prevResult", details: "not-an-ip"},
		{name: "CNI_NETNS is the plugin's own namespace on ADD",
			in:   invocation{env: env(CmdAdd, "CNI_NETNS=/proc/self/ns/net"), stdin: conf("1.1.0")},
			code: 8, msg: "CNI_NETNS is the plugin's own network namespace", details: "CNI_NETNS_OVERRIDE"},
		{name: "CNI_NETNS is the plugin's own namespace on CHECK",
			in:   invocation{env: env(CmdCheck, "CNI_NETNS=/proc/self/ns/net"), stdin: conf("1.1.0")},
			code: 8, msg: "CNI_NETNS is the plugin's own network namespace"},
		{name: "CNI_NETNS is the plugin's own namespace on DEL",
			in:   invocation{env: env(CmdDel, "CNI_NETNS=/proc/self/ns/net", "CNI_NETNS_OVERRIDE=0"), stdin: conf("1.1.0")},
			code: 8, msg: "CNI_NETNS is the plugin's own network namespace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info := testInfo
			if tt.info != nil {
				info = *tt.info
			}
			p := &fakeGCPlugin{fakePlugin{result: sampleResult()}}
			out := execute(t, p, info, tt.in)
			if out.code != 1 {
				t.Errorf("exit code %d, want 1", out.code)
			}
			e := decodeError(t, out)
			if e.Code != tt.code || e.Msg != tt.msg || !strings.Contains(e.Details, tt.details) {
				t.Errorf("got {code %d, msg %q, details %q}\nwant {code %d, msg %q, details containing %q}",
					e.Code, e.Msg, e.Details, tt.code, tt.msg, tt.details)
			}
			if len(p.calls) != 0 {
				t.Errorf("plugin was called (%v) although the request was refused", p.calls)
			}
			if out.stderr != "" {
				t.Errorf("unexpected stderr %q", out.stderr)
			}
			if !strings.HasSuffix(out.stdout, "}\n") {
				t.Errorf("error object should end with a newline: %q", out.stdout)
			}
		})
	}
}

func TestNetnsOverride(t *testing.T) {
	for _, v := range []string{"1", "true", "TRUE"} {
		p := &fakePlugin{result: sampleResult()}
		out := execute(t, p, testInfo, invocation{
			env:   env(CmdAdd, "CNI_NETNS=/proc/self/ns/net", "CNI_NETNS_OVERRIDE="+v),
			stdin: conf("1.1.0"),
		})
		if out.code != 0 || len(p.calls) != 1 {
			t.Errorf("CNI_NETNS_OVERRIDE=%s: exit %d, calls %v, stdout %s", v, out.code, p.calls, out.stdout)
		}
	}
}

func TestAboutBanner(t *testing.T) {
	p := &fakePlugin{}
	out := execute(t, p, Info{Name: "fake", About: "knit fake v1", Versions: []string{"0.4.0", "1.1.0"}},
		invocation{env: map[string]string{}})
	if out.code != 0 || out.stdout != "" {
		t.Fatalf("exit %d stdout %q, want 0 and nothing", out.code, out.stdout)
	}
	want := "knit fake v1\nCNI protocol versions supported: 0.4.0, 1.1.0\n"
	if out.stderr != want {
		t.Errorf("banner %q, want %q", out.stderr, want)
	}
	if len(p.calls) != 0 {
		t.Errorf("plugin called: %v", p.calls)
	}
}

func TestVersion(t *testing.T) {
	tests := []struct {
		name  string
		info  Info
		stdin string
		want  string
	}{
		{"no env, empty stdin", testInfo, "",
			`{"cniVersion":"1.1.0","supportedVersions":["0.1.0","0.2.0","0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}`},
		{"echoes the request version", Info{Name: "x", Versions: []string{"0.3.1", "0.4.0"}}, `{"cniVersion":"0.4.0"}`,
			`{"cniVersion":"0.4.0","supportedVersions":["0.3.1","0.4.0"]}`},
		{"unknown request version gets ours", testInfo, `{"cniVersion":"7.0.0"}`,
			`{"cniVersion":"1.1.0","supportedVersions":["0.1.0","0.2.0","0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}`},
		{"garbage stdin is ignored", testInfo, `not json`,
			`{"cniVersion":"1.1.0","supportedVersions":["0.1.0","0.2.0","0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &fakePlugin{}
			out := execute(t, p, tt.info, invocation{env: map[string]string{"CNI_COMMAND": CmdVersion}, stdin: tt.stdin})
			if out.code != 0 {
				t.Fatalf("exit %d: %s", out.code, out.stdout)
			}
			if strings.TrimSpace(out.stdout) != tt.want {
				t.Errorf("got %s\nwant %s", out.stdout, tt.want)
			}
			vi, err := cni.ParseVersionInfo([]byte(out.stdout))
			if err != nil {
				t.Fatalf("our own VERSION answer does not parse: %v", err)
			}
			if len(vi.SupportedVersions) == 0 {
				t.Error("no supported versions")
			}
			if len(p.calls) != 0 {
				t.Errorf("plugin called: %v", p.calls)
			}
		})
	}
}

// TestResultVersion: whatever version the plugin builds its result in, it is
// printed in the request's version.
func TestResultVersion(t *testing.T) {
	tests := []struct {
		version string
		want    string
	}{
		{"1.1.0", `{"cniVersion":"1.1.0","interfaces":[{"name":"eth0","mac":"aa:bb:cc:dd:ee:ff","mtu":1400,"sandbox":"/x"}],` +
			`"ips":[{"interface":0,"address":"10.1.2.3/24","gateway":"10.1.2.1"},{"interface":0,"address":"fd00::3/64"}],` +
			`"routes":[{"dst":"0.0.0.0/0","gw":"10.1.2.1","mtu":1300}]}`},
		{"1.0.0", `{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","mac":"aa:bb:cc:dd:ee:ff","mtu":1400,"sandbox":"/x"}],` +
			`"ips":[{"interface":0,"address":"10.1.2.3/24","gateway":"10.1.2.1"},{"interface":0,"address":"fd00::3/64"}],` +
			`"routes":[{"dst":"0.0.0.0/0","gw":"10.1.2.1","mtu":1300}]}`},
		{"0.4.0", `{"cniVersion":"0.4.0","interfaces":[{"name":"eth0","mac":"aa:bb:cc:dd:ee:ff","sandbox":"/x"}],` +
			`"ips":[{"version":"4","interface":0,"address":"10.1.2.3/24","gateway":"10.1.2.1"},{"version":"6","interface":0,"address":"fd00::3/64"}],` +
			`"routes":[{"dst":"0.0.0.0/0","gw":"10.1.2.1","mtu":1300}],"dns":{}}`},
		{"0.3.0", `{"cniVersion":"0.3.0","interfaces":[{"name":"eth0","mac":"aa:bb:cc:dd:ee:ff","sandbox":"/x"}],` +
			`"ips":[{"version":"4","interface":0,"address":"10.1.2.3/24","gateway":"10.1.2.1"},{"version":"6","interface":0,"address":"fd00::3/64"}],` +
			`"routes":[{"dst":"0.0.0.0/0","gw":"10.1.2.1","mtu":1300}],"dns":{}}`},
		{"0.2.0", `{"cniVersion":"0.2.0","ip4":{"ip":"10.1.2.3/24","gateway":"10.1.2.1","routes":[{"dst":"0.0.0.0/0","gw":"10.1.2.1"}]},` +
			`"ip6":{"ip":"fd00::3/64"},"dns":{}}`},
		{"", `{"cniVersion":"0.1.0","ip4":{"ip":"10.1.2.3/24","gateway":"10.1.2.1","routes":[{"dst":"0.0.0.0/0","gw":"10.1.2.1"}]},` +
			`"ip6":{"ip":"fd00::3/64"},"dns":{}}`},
	}
	for _, tt := range tests {
		t.Run("v"+tt.version, func(t *testing.T) {
			p := &fakePlugin{result: sampleResult()}
			stdin := `{"name":"net1","type":"fake"}`
			if tt.version != "" {
				stdin = conf(tt.version)
			}
			out := execute(t, p, testInfo, invocation{env: env(CmdAdd), stdin: stdin})
			if out.code != 0 {
				t.Fatalf("exit %d: %s", out.code, out.stdout)
			}
			if !strings.HasPrefix(out.stdout, "{\n    \"cniVersion\"") || !strings.HasSuffix(out.stdout, "}\n") {
				t.Errorf("result not printed indented with a trailing newline:\n%s", out.stdout)
			}
			var got bytes.Buffer
			if err := json.Compact(&got, []byte(out.stdout)); err != nil {
				t.Fatal(err)
			}
			if got.String() != tt.want {
				t.Errorf("got  %s\nwant %s", got.String(), tt.want)
			}
			wantVersion := tt.version
			if wantVersion == "" {
				wantVersion = cni.Version010
			}
			if p.last.Version != wantVersion {
				t.Errorf("Request.Version = %q, want %q", p.last.Version, wantVersion)
			}
		})
	}
}

func TestPluginErrors(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		result  *cni.Result
		version string
		code    uint
		msg     string
	}{
		{"untyped error is internal", errors.New("netlink said no"), nil, "1.1.0", 999, "netlink said no"},
		{"typed error keeps its code", cni.NewError(cni.ErrTryAgainLater, "busy", "retry"), nil, "1.1.0", 11, "busy"},
		{"wrapped typed error keeps its code", fmt.Errorf("setting up: %w", cni.Errorf(107, "no addresses left")), nil, "1.1.0", 107, "no addresses left"},
		{"nil result from ADD", nil, nil, "1.1.0", 999, "plugin returned no result from ADD"},
		{"IP-less result cannot be printed as 0.2.0", nil, &cni.Result{CNIVersion: "1.1.0", Interfaces: []*cni.Interface{{Name: "lo"}}},
			"0.2.0", 1, "cannot print result in the requested version"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &fakePlugin{result: tt.result, err: tt.err}
			out := execute(t, p, testInfo, invocation{env: env(CmdAdd), stdin: conf(tt.version)})
			e := decodeError(t, out)
			if e.Code != tt.code || e.Msg != tt.msg {
				t.Errorf("got code %d msg %q, want %d %q", e.Code, e.Msg, tt.code, tt.msg)
			}
			if len(p.calls) != 1 {
				t.Errorf("calls %v, want one ADD", p.calls)
			}
		})
	}
	// The same for the commands without a result.
	for _, cmd := range []string{CmdDel, CmdCheck, CmdGC, CmdStatus} {
		p := &fakeGCPlugin{fakePlugin{err: errors.New("broken " + cmd)}}
		out := execute(t, p, testInfo, invocation{env: env(cmd), stdin: conf("1.1.0")})
		e := decodeError(t, out)
		if e.Code != 999 || e.Msg != "broken "+cmd {
			t.Errorf("%s: got code %d msg %q", cmd, e.Code, e.Msg)
		}
	}
}

func TestTypedNilErrorIsSuccess(t *testing.T) {
	var typedNil *cni.Error
	p := &fakePlugin{err: typedNil}
	out := execute(t, p, testInfo, invocation{env: env(CmdDel), stdin: conf("1.1.0")})
	if out.code != 0 || out.stdout != "" {
		t.Errorf("exit %d stdout %q, want success and no output", out.code, out.stdout)
	}
}

func TestRequest(t *testing.T) {
	stdin := conf("1.1.0", `"custom":{"a":1}`, `"ipam":{"type":"host-local"}`,
		`"prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/x"}],"ips":[{"interface":0,"address":"10.0.0.2/24"}]}`)
	p := &fakePlugin{result: sampleResult()}
	out := execute(t, p, testInfo, invocation{env: env(CmdAdd), stdin: stdin})
	if out.code != 0 {
		t.Fatalf("exit %d: %s", out.code, out.stdout)
	}
	r := p.last
	if r.Command != CmdAdd || r.ContainerID != "c1" || r.IfName != "eth0" || r.Netns != "/var/run/netns/knit-skel-test-does-not-exist" {
		t.Errorf("attachment fields wrong: %+v", r)
	}
	if r.Args != "IgnoreUnknown=1;K8S_POD_NAME=p" {
		t.Errorf("Args = %q", r.Args)
	}
	if strings.Join(r.Path, "|") != "/opt/cni/bin|/usr/lib/cni" {
		t.Errorf("Path = %q", r.Path)
	}
	if string(r.Config) != stdin {
		t.Errorf("Config is not stdin verbatim: %s", r.Config)
	}
	if r.NetConf.Name != "net1" || r.NetConf.Type != "fake" || r.NetConf.IPAM.Type != "host-local" {
		t.Errorf("NetConf = %+v", r.NetConf)
	}
	if r.PrevResult == nil || r.PrevResult.CNIVersion != "1.0.0" || len(r.PrevResult.IPs) != 1 ||
		r.PrevResult.IPs[0].Address.String() != "10.0.0.2/24" {
		t.Errorf("PrevResult = %+v", r.PrevResult)
	}
	found := false
	for _, kv := range r.Env {
		if kv == "CNI_IFNAME=eth0" {
			found = true
		}
	}
	if !found {
		t.Errorf("Env lacks CNI_IFNAME: %v", r.Env)
	}
}

func TestCommandsReachThePlugin(t *testing.T) {
	tests := []struct {
		cmd     string
		env     map[string]string
		version string
		gcer    bool
		want    []string
	}{
		{CmdDel, env(CmdDel, "CNI_NETNS=-"), "0.1.0", false, []string{CmdDel}},
		{CmdDel, env(CmdDel), "", false, []string{CmdDel}},
		{CmdCheck, env(CmdCheck), "0.4.0", false, []string{CmdCheck}},
		{CmdGC, map[string]string{"CNI_COMMAND": CmdGC, "CNI_PATH": "/bin"}, "1.1.0", true, []string{CmdGC}},
		{CmdStatus, map[string]string{"CNI_COMMAND": CmdStatus}, "1.1.0", true, []string{CmdStatus}},
		// Plugins without GC/STATUS succeed without being asked.
		{CmdGC, map[string]string{"CNI_COMMAND": CmdGC, "CNI_PATH": "/bin"}, "1.1.0", false, nil},
		{CmdStatus, map[string]string{"CNI_COMMAND": CmdStatus}, "1.1.0", false, nil},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s %s gc=%v", tt.cmd, tt.version, tt.gcer), func(t *testing.T) {
			f := &fakeGCPlugin{}
			var p Plugin = &f.fakePlugin
			if tt.gcer {
				p = f
			}
			stdin := `{"name":"net1","type":"fake"}`
			if tt.version != "" {
				stdin = conf(tt.version, `"cni.dev/valid-attachments":[{"containerID":"c9","ifname":"eth1"}]`)
			}
			out := execute(t, p, testInfo, invocation{env: tt.env, stdin: stdin})
			if out.code != 0 || out.stdout != "" {
				t.Fatalf("exit %d stdout %q, want success with no output", out.code, out.stdout)
			}
			if fmt.Sprint(f.calls) != fmt.Sprint(tt.want) {
				t.Errorf("calls %v, want %v", f.calls, tt.want)
			}
			if tt.cmd == CmdGC && tt.gcer {
				att := f.last.NetConf.Attachments()
				if len(att) != 1 || att[0].ContainerID != "c9" || att[0].IfName != "eth1" {
					t.Errorf("GC attachments = %+v", att)
				}
			}
		})
	}
}

// TestAppendVersionInfo: the directly written VERSION answer is byte for byte
// what json.Marshal writes, for plain version tokens and for strings that
// need escaping (which take json.Marshal's path).
func TestAppendVersionInfo(t *testing.T) {
	tests := []struct {
		v         string
		supported []string
	}{
		{"1.1.0", cni.AllVersions},
		{"0.4.0", []string{"0.3.1", "0.4.0"}},
		{"1.0.0", []string{}},
		{"1.0.0", nil},
		{"1.0.0-rc_1", []string{"1.0.0-rc_1", "A.b"}},
		{`1"0`, []string{"1.0.0"}},
		{"1.0.0", []string{"<1.0.0>", "é", "a\\b", "tab\t"}},
	}
	for _, tt := range tests {
		want, err := json.Marshal(cni.VersionInfo{CNIVersion: tt.v, SupportedVersions: tt.supported})
		if err != nil {
			t.Fatal(err)
		}
		got, err := appendVersionInfo([]byte("prefix:"), tt.v, tt.supported)
		if err != nil {
			t.Fatalf("%q %q: %v", tt.v, tt.supported, err)
		}
		if string(got) != "prefix:"+string(want)+"\n" {
			t.Errorf("%q %q:\n got %s\nwant %s", tt.v, tt.supported, got, want)
		}
	}
}
