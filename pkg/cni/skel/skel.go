// Package skel is the plugin side of the CNI protocol: it turns a plugin
// process's environment and stdin into a typed Request, negotiates the spec
// version, dispatches to the plugin's Add/Del/Check/GC/Status, prints the
// result in the request's cniVersion and prints failures as the spec's error
// object on stdout with the right code.
package skel

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/knit-cni/knit/internal/netns"
	"github.com/knit-cni/knit/pkg/cni"
)

// Commands.
const (
	CmdAdd     = "ADD"
	CmdDel     = "DEL"
	CmdCheck   = "CHECK"
	CmdGC      = "GC"
	CmdStatus  = "STATUS"
	CmdVersion = "VERSION"
)

// Request is one invocation of a plugin.
type Request struct {
	Command     string
	ContainerID string
	Netns       string
	IfName      string
	Args        string   // raw CNI_ARGS
	Path        []string // CNI_PATH, split
	// Config is stdin exactly as received; plugins unmarshal their own keys from it.
	Config []byte
	// NetConf holds the keys every plugin shares, parsed from Config.
	NetConf cni.NetConf
	// Version is the config's cniVersion ("" is reported as 0.1.0).
	Version string
	// PrevResult is the parsed prevResult, or nil.
	PrevResult *cni.Result
	// Env gives the plugin's environment (for delegating to IPAM plugins).
	Env []string
}

// Plugin is what every knit plugin implements.
type Plugin interface {
	Add(ctx context.Context, req *Request) (*cni.Result, error)
	Del(ctx context.Context, req *Request) error
	Check(ctx context.Context, req *Request) error
}

// GCer is implemented by plugins that hold state a GC can release.
type GCer interface {
	GC(ctx context.Context, req *Request) error
}

// Statuser is implemented by plugins that can tell whether they are ready.
type Statuser interface {
	Status(ctx context.Context, req *Request) error
}

// Info describes a plugin for VERSION and the about banner.
type Info struct {
	Name     string   // the plugin type, e.g. "host-local"
	Versions []string // supported spec versions; nil means cni.AllVersions
	About    string   // one line printed when run without CNI_COMMAND
}

// IO is the process's environment and standard streams; tests substitute it.
type IO struct {
	Getenv  func(string) string
	Environ func() []string
	Stdin   io.Reader
	Stdout  io.Writer
	Stderr  io.Writer
}

// OSIO is the real process environment.
func OSIO() IO {
	return IO{Getenv: os.Getenv, Environ: os.Environ, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}
}

// Main runs the plugin with the process environment and exits.
func Main(p Plugin, info Info) {
	code := Execute(context.Background(), p, info, OSIO())
	for _, f := range exitHooks {
		f()
	}
	os.Exit(code)
}

var exitHooks []func()

// AtExit registers f to run in Main after the plugin's answer has been
// written, just before the process exits: the runtime already has the
// result, so f can hand off what would delay the exit (e.g. sockets whose
// release the kernel makes wait). Register from an init function; f must be
// quick and must not write to stdout.
func AtExit(f func()) { exitHooks = append(exitHooks, f) }

// Execute runs one invocation and returns the process exit code.
func Execute(ctx context.Context, p Plugin, info Info, pio IO) int {
	if info.Versions == nil {
		info.Versions = cni.AllVersions
	}
	res, err := run(ctx, p, info, pio)
	// A typed nil *cni.Error returned as error is a plugin bug, not a failure.
	if e := cni.AsError(err, cni.ErrInternal); e != nil {
		pio.Stdout.Write(append(e.JSON(), '\n'))
		return 1
	}
	if res != nil {
		pio.Stdout.Write(res)
	}
	return 0
}

// requiredEnv lists the variables each command needs (spec §1.2).
var requiredEnv = map[string][]string{
	CmdAdd:    {"CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"},
	CmdCheck:  {"CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"},
	CmdDel:    {"CNI_CONTAINERID", "CNI_IFNAME"},
	CmdGC:     {"CNI_PATH"},
	CmdStatus: {},
}

func run(ctx context.Context, p Plugin, info Info, pio IO) ([]byte, error) {
	cmd := pio.Getenv("CNI_COMMAND")
	if cmd == "" {
		if info.About != "" {
			fmt.Fprintf(pio.Stderr, "%s\nCNI protocol versions supported: %s\n", info.About, strings.Join(info.Versions, ", "))
			return nil, nil
		}
		return nil, cni.NewError(cni.ErrInvalidEnvironmentVariables, "required env variables [CNI_COMMAND] missing", "")
	}
	if cmd == CmdVersion {
		return versionAnswer(info, pio.Stdin)
	}
	need, ok := requiredEnv[cmd]
	if !ok {
		return nil, cni.NewError(cni.ErrInvalidEnvironmentVariables, "unknown CNI_COMMAND: "+cmd,
			"expected one of ADD, DEL, CHECK, GC, STATUS, VERSION")
	}
	var missing []string
	for _, k := range need {
		if pio.Getenv(k) == "" {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return nil, cni.NewError(cni.ErrInvalidEnvironmentVariables,
			fmt.Sprintf("required env variables [%s] missing", strings.Join(missing, ",")), "")
	}

	stdin, err := io.ReadAll(pio.Stdin)
	if err != nil {
		return nil, cni.NewError(cni.ErrIOFailure, "error reading from stdin", err.Error())
	}
	req := &Request{
		Command:     cmd,
		ContainerID: pio.Getenv("CNI_CONTAINERID"),
		Netns:       pio.Getenv("CNI_NETNS"),
		IfName:      pio.Getenv("CNI_IFNAME"),
		Args:        pio.Getenv("CNI_ARGS"),
		Config:      stdin,
	}
	if pio.Environ != nil {
		req.Env = pio.Environ()
	}
	if p := pio.Getenv("CNI_PATH"); p != "" {
		req.Path = strings.Split(p, string(os.PathListSeparator))
	}
	if err := json.Unmarshal(stdin, &req.NetConf); err != nil {
		return nil, cni.NewError(cni.ErrDecodingFailure, "error decoding network config from stdin", err.Error())
	}
	if e := cni.ValidateNetworkName(req.NetConf.Name); e != nil {
		return nil, e
	}
	if cmd == CmdAdd || cmd == CmdDel || cmd == CmdCheck {
		if e := cni.ValidateContainerID(req.ContainerID); e != nil {
			return nil, e
		}
		if e := cni.ValidateInterfaceName(req.IfName); e != nil {
			return nil, e
		}
	}
	if err := negotiate(cmd, req.NetConf.CNIVersion, info.Versions); err != nil {
		return nil, err
	}
	req.Version = req.NetConf.CNIVersion
	if req.Version == "" {
		req.Version = cni.Version010
	}
	if req.PrevResult, err = cni.ParsePrevResult(req.NetConf.RawPrevResult, req.Version); err != nil {
		return nil, err
	}
	// Refuse before the plugin runs (the reference checks only afterwards,
	// when an ADD or DEL has already changed the host's own namespace). A
	// path that cannot be opened is left for the plugin to report.
	if req.Netns != "" && (cmd == CmdAdd || cmd == CmdCheck || cmd == CmdDel) && !override(pio) {
		if same, err := netns.SameAsCurrent(req.Netns); err == nil && same {
			return nil, cni.NewError(cni.ErrInvalidNetNS, "CNI_NETNS is the plugin's own network namespace",
				req.Netns+": the runtime must pass the container's namespace, not the host's (set CNI_NETNS_OVERRIDE=1 if this is intended)")
		}
	}

	switch cmd {
	case CmdAdd:
		res, err := p.Add(ctx, req)
		if err != nil {
			return nil, err
		}
		if res == nil {
			return nil, cni.NewError(cni.ErrInternal, "plugin returned no result from ADD", "")
		}
		out, err := res.Print(req.Version)
		if err != nil {
			return nil, cni.NewError(cni.ErrIncompatibleCNIVersion, "cannot print result in the requested version", err.Error())
		}
		return out, nil
	case CmdDel:
		return nil, p.Del(ctx, req)
	case CmdCheck:
		return nil, p.Check(ctx, req)
	case CmdGC:
		if g, ok := p.(GCer); ok {
			return nil, g.GC(ctx, req)
		}
		return nil, nil
	case CmdStatus:
		if s, ok := p.(Statuser); ok {
			return nil, s.Status(ctx, req)
		}
		return nil, nil
	}
	return nil, nil
}

func override(pio IO) bool {
	v := strings.ToLower(pio.Getenv("CNI_NETNS_OVERRIDE"))
	return v == "1" || v == "true"
}

// negotiate checks the config version against what the plugin supports and
// what the command requires.
func negotiate(cmd, v string, supported []string) error {
	ver := v
	if ver == "" {
		ver = cni.Version010
	}
	found := false
	for _, s := range supported {
		if s == ver {
			found = true
		}
	}
	if !found {
		return cni.NewError(cni.ErrIncompatibleCNIVersion, "incompatible CNI versions",
			fmt.Sprintf("config is %q, plugin supports %q", ver, supported))
	}
	switch cmd {
	case CmdCheck:
		if !cni.VersionAtLeast(ver, cni.Version040) {
			return cni.NewError(cni.ErrIncompatibleCNIVersion, "config version does not allow CHECK",
				fmt.Sprintf("config is %q; CHECK needs 0.4.0 or later", ver))
		}
	case CmdGC, CmdStatus:
		if !cni.VersionAtLeast(ver, cni.Version110) {
			return cni.NewError(cni.ErrIncompatibleCNIVersion, fmt.Sprintf("config version does not allow %s", cmd),
				fmt.Sprintf("config is %q; %s needs 1.1.0 or later", ver, cmd))
		}
	}
	return nil
}

// versionAnswer answers VERSION: the supported list, echoing the request's
// cniVersion when it is one we support. VERSION needs no stdin, so a terminal
// on stdin is not read (a person probing the plugin would otherwise hang).
func versionAnswer(info Info, stdin io.Reader) ([]byte, error) {
	v := cni.CurrentVersion
	if isTerminal(stdin) {
		stdin = strings.NewReader("")
	}
	if data, err := io.ReadAll(io.LimitReader(stdin, 1<<20)); err == nil {
		var in struct {
			CNIVersion string `json:"cniVersion"`
		}
		if json.Unmarshal(data, &in) == nil && in.CNIVersion != "" && cni.IsSupportedVersion(in.CNIVersion) {
			v = in.CNIVersion
		}
	}
	return appendVersionInfo(nil, v, info.Versions)
}

// appendVersionInfo appends the VERSION answer and a newline to b: the JSON
// of cni.VersionInfo, written directly when every string is a plain version
// token (the usual case; it spares a short-lived process the reflection
// behind json.Marshal), through json.Marshal otherwise.
func appendVersionInfo(b []byte, v string, supported []string) ([]byte, error) {
	plain := plainToken(v)
	for _, s := range supported {
		plain = plain && plainToken(s)
	}
	if !plain || supported == nil {
		out, err := json.Marshal(cni.VersionInfo{CNIVersion: v, SupportedVersions: supported})
		if err != nil {
			return nil, err
		}
		return append(append(b, out...), '\n'), nil
	}
	b = append(b, `{"cniVersion":"`...)
	b = append(b, v...)
	b = append(b, `","supportedVersions":[`...)
	for i, s := range supported {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, s...)
		b = append(b, '"')
	}
	return append(b, "]}\n"...), nil
}

// plainToken reports whether s needs no JSON escaping and no HTML-safe
// rewriting: letters, digits, '.', '-' and '_'.
func plainToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// isTerminal reports whether r is a character device such as a terminal.
func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok || f == nil {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
