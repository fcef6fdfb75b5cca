package invoke

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/knit-cni/knit/pkg/cni"
)

// fakeBinary is a multi-call "executable" with links named by type, and an
// InProcess whose Runner records what it ran.
type fakeBinary struct {
	dir   string // holds self and the links
	self  string
	ran   []string
	env   []string
	stdin []byte
	run   Runner // what the built-in plugin does
	ip    *InProcess
}

func newFakeBinary(t *testing.T, types ...string) *fakeBinary {
	t.Helper()
	f := &fakeBinary{dir: t.TempDir()}
	f.self = script(t, f.dir, "multi", "echo 'exec of the multi-call binary must not happen' >&2; exit 7\n")
	for _, typ := range types {
		if err := os.Symlink("multi", filepath.Join(f.dir, typ)); err != nil {
			t.Fatal(err)
		}
	}
	f.ip = &InProcess{
		Has: func(typ string, env []string) bool {
			return (typ == "builtin" || typ == "panicky") && !slices.Contains(env, "DECLINE=1")
		},
		Self: f.self,
		Run: func(ctx context.Context, typ string, stdin []byte, env []string, stdout, stderr io.Writer) int {
			f.ran = append(f.ran, typ)
			f.env, f.stdin = env, stdin
			return f.run(ctx, typ, stdin, env, stdout, stderr)
		},
	}
	return f
}

func TestInProcessChosenOnlyForSameFileAndKnownType(t *testing.T) {
	f := newFakeBinary(t, "builtin", "unknown")
	f.run = func(_ context.Context, _ string, _ []byte, _ []string, stdout, _ io.Writer) int {
		fmt.Fprint(stdout, "in-process")
		return 0
	}
	ctx := context.Background()
	// A link to self of a built-in type: in-process, no exec.
	out, err := f.ip.ExecPlugin(ctx, filepath.Join(f.dir, "builtin"), []byte("IN"), []string{"A=1"})
	if err != nil || string(out) != "in-process" || len(f.ran) != 1 || f.ran[0] != "builtin" {
		t.Fatalf("built-in: out %q err %v ran %v", out, err, f.ran)
	}
	if string(f.stdin) != "IN" || strings.Join(f.env, ",") != "A=1" {
		t.Errorf("runner got stdin %q env %q", f.stdin, f.env)
	}
	// The built-in plugin may decline an environment: exec'd then.
	if _, err := f.ip.ExecPlugin(ctx, filepath.Join(f.dir, "builtin"), nil, []string{"DECLINE=1"}); err == nil || len(f.ran) != 1 {
		t.Fatalf("declined: err %v ran %v", err, f.ran)
	}
	// A link to self of a type not built in: exec'd (the binary itself
	// decides what to do with an unknown name).
	_, err = f.ip.ExecPlugin(ctx, filepath.Join(f.dir, "unknown"), nil, nil)
	if err == nil || !strings.Contains(err.Error(), "exit status 7") || len(f.ran) != 1 {
		t.Fatalf("unknown type: err %v ran %v", err, f.ran)
	}
	// A different file named like a built-in type: exec'd.
	other := t.TempDir()
	p := script(t, other, "builtin", "echo foreign\n")
	out, err = f.ip.ExecPlugin(ctx, p, nil, nil)
	if err != nil || string(out) != "foreign\n" || len(f.ran) != 1 {
		t.Fatalf("foreign binary: out %q err %v ran %v", out, err, f.ran)
	}
	// A hard link is the same file.
	if err := os.Link(f.self, filepath.Join(other, "panicky")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ip.ExecPlugin(ctx, filepath.Join(other, "panicky"), nil, nil); err != nil || len(f.ran) != 2 {
		t.Fatalf("hard link: err %v ran %v", err, f.ran)
	}
	// When the executable cannot be found nothing runs in-process.
	gone := &InProcess{Has: f.ip.Has, Run: f.ip.Run, Self: filepath.Join(other, "missing")}
	if _, err := gone.ExecPlugin(ctx, filepath.Join(f.dir, "builtin"), nil, nil); err == nil || len(f.ran) != 2 {
		t.Fatalf("missing self: err %v ran %v", err, f.ran)
	}
}

// TestInProcessMapsLikeRawExec runs the same plugin behaviour once as a
// process (a script under RawExec) and once in-process, and requires the
// same output, error text, error code and forwarded stderr.
func TestInProcessMapsLikeRawExec(t *testing.T) {
	cases := []struct {
		name           string
		stdout, stderr string
		code           int
	}{
		{"success", `{"cniVersion":"1.1.0"}` + "\n", "log line\n", 0},
		{"success-silent", "", "", 0},
		{"json", `{"code":11,"msg":"busy","details":"later"}` + "\n", "noise\n", 1},
		{"json-no-details", `{"cniVersion":"1.0.0","code":7,"msg":"bad config"}`, "", 1},
		{"stderr", "", "it broke\n", 3},
		{"nothing", "", "", 2},
		{"garbage", "oops\n", "", 1},
	}
	f := newFakeBinary(t, "builtin")
	scripts := t.TempDir()
	ctx := context.Background()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := fmt.Sprintf("printf '%%s' '%s'; printf '%%s' '%s' >&2; exit %d\n", c.stdout, c.stderr, c.code)
			p := script(t, scripts, c.name, body)
			var rawErr, ipErr bytes.Buffer
			rawOut, rawE := (&RawExec{Stderr: &rawErr}).ExecPlugin(ctx, p, nil, nil)

			f.run = func(_ context.Context, _ string, _ []byte, _ []string, stdout, stderr io.Writer) int {
				io.WriteString(stdout, c.stdout)
				io.WriteString(stderr, c.stderr)
				return c.code
			}
			f.ip.Stderr = &ipErr
			ipOut, ipE := f.ip.ExecPlugin(ctx, filepath.Join(f.dir, "builtin"), nil, nil)

			if !bytes.Equal(rawOut, ipOut) {
				t.Errorf("stdout: exec %q, in-process %q", rawOut, ipOut)
			}
			if (rawE == nil) != (ipE == nil) || (rawE != nil && rawE.Error() != ipE.Error()) {
				t.Errorf("error: exec %v, in-process %v", rawE, ipE)
			}
			if rawE != nil {
				var a, b *cni.Error
				if !errors.As(rawE, &a) || !errors.As(ipE, &b) || *a != *b {
					t.Errorf("error objects differ: exec %#v, in-process %#v", rawE, ipE)
				}
			}
			if rawErr.String() != ipErr.String() {
				t.Errorf("forwarded stderr: exec %q, in-process %q", rawErr.String(), ipErr.String())
			}
		})
	}
}

func TestInProcessPanicIsAnError(t *testing.T) {
	old := slog.Default()
	var logged bytes.Buffer
	slog.SetDefault(slog.New(slog.NewTextHandler(&logged, nil)))
	t.Cleanup(func() { slog.SetDefault(old) })
	f := newFakeBinary(t, "panicky")
	f.run = func(context.Context, string, []byte, []string, io.Writer, io.Writer) int {
		panic("index out of range [3] with length 2")
	}
	_, err := f.ip.ExecPlugin(context.Background(), filepath.Join(f.dir, "panicky"), nil, nil)
	if cni.Code(err) != cni.ErrInternal || !strings.Contains(err.Error(), "plugin panicky panicked: index out of range [3] with length 2") {
		t.Fatalf("panic: %v (code %d)", err, cni.Code(err))
	}
	if !strings.Contains(logged.String(), "inprocess_test.go") {
		t.Errorf("the panic's stack was not logged: %s", logged.String())
	}
}

func TestInProcessContextDone(t *testing.T) {
	f := newFakeBinary(t, "builtin")
	started := make(chan struct{})
	f.run = func(ctx context.Context, _ string, _ []byte, _ []string, stdout, _ io.Writer) int {
		close(started)
		<-ctx.Done() // a plugin honouring its deadline
		fmt.Fprintf(stdout, `{"code":%d,"msg":"interrupted"}`, cni.ErrTryAgainLater)
		return 1
	}
	// Already cancelled: the plugin is not started, like RawExec.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := f.ip.ExecPlugin(ctx, filepath.Join(f.dir, "builtin"), nil, nil)
	if err == nil || len(f.ran) != 0 || !strings.Contains(err.Error(), "was stopped: context canceled") {
		t.Fatalf("cancelled before start: %v, ran %v", err, f.ran)
	}
	script(t, f.dir, "sleeper", "exec sleep 30\n")
	_, rawE := (&RawExec{}).ExecPlugin(ctx, filepath.Join(f.dir, "sleeper"), nil, nil)
	if rawE == nil || err.Error() != strings.Replace(rawE.Error(), "sleeper", "builtin", 1) {
		t.Errorf("cancelled before start: in-process %q, exec %q", err, rawE)
	}
	// Cancelled while running: the plugin's own error is kept. (Cancelled
	// only once the plugin runs: a cancel before the start is the case
	// above.)
	ctx, cancel = context.WithCancel(context.Background())
	go func() {
		<-started
		cancel()
	}()
	_, err = f.ip.ExecPlugin(ctx, filepath.Join(f.dir, "builtin"), nil, nil)
	if cni.Code(err) != cni.ErrTryAgainLater || len(f.ran) != 1 {
		t.Fatalf("cancelled while running: %v", err)
	}
}

func TestDelegateExecHook(t *testing.T) {
	f := newFakeBinary(t, "builtin")
	f.run = func(_ context.Context, _ string, _ []byte, env []string, stdout, _ io.Writer) int {
		getenv, _ := EnvLookup(env)
		fmt.Fprintf(stdout, `{"cniVersion":"1.0.0","ips":[{"address":"10.1.2.3/24"}],"dns":{"domain":%q}}`, getenv("CNI_COMMAND"))
		return 0
	}
	old := DelegateExec
	DelegateExec = f.ip
	t.Cleanup(func() { DelegateExec = old })
	t.Setenv("CNI_PATH", f.dir)
	t.Setenv("CNI_COMMAND", "ADD")
	t.Setenv("KNIT_TEST_MARK", "x")
	conf := []byte(`{"cniVersion":"1.0.0","name":"n"}`)
	ctx := context.Background()

	res, err := DelegateAdd(ctx, "builtin", conf, nil)
	if err != nil || len(res.IPs) != 1 || res.IPs[0].Address.String() != "10.1.2.3/24" || res.DNS.Domain != "ADD" {
		t.Fatalf("DelegateAdd: %+v, %v", res, err)
	}
	// The runner gets exactly the environment the exec would get.
	if strings.Join(f.env, "\n") != strings.Join(DelegateEnv("ADD"), "\n") {
		t.Errorf("in-process env differs from DelegateEnv")
	}
	if string(f.stdin) != string(conf) {
		t.Errorf("stdin %q", f.stdin)
	}
	for _, cmd := range []func() error{
		func() error { return DelegateDel(ctx, "builtin", conf, nil) },
		func() error { return DelegateCheck(ctx, "builtin", conf, nil) },
		func() error { return DelegateStatus(ctx, "builtin", conf, nil) },
		func() error { return DelegateGC(ctx, "builtin", conf, nil) },
	} {
		if err := cmd(); err != nil {
			t.Fatal(err)
		}
	}
	if got := strings.Join(f.ran, ","); got != "builtin,builtin,builtin,builtin,builtin" {
		t.Errorf("ran %s", got)
	}
	// An explicit exec is used as given, never the hook.
	if _, err := DelegateAdd(ctx, "builtin", conf, &RawExec{}); err == nil || len(f.ran) != 5 {
		t.Errorf("explicit RawExec: %v, ran %v", err, f.ran)
	}
	// Someone else's binary earlier on CNI_PATH is exec'd.
	foreign := t.TempDir()
	script(t, foreign, "builtin", `echo '{"cniVersion":"1.0.0","ips":[{"address":"10.9.9.9/24"}]}'`+"\n")
	t.Setenv("CNI_PATH", foreign+string(os.PathListSeparator)+f.dir)
	res, err = DelegateAdd(ctx, "builtin", conf, nil)
	if err != nil || res.IPs[0].Address.String() != "10.9.9.9/24" || len(f.ran) != 5 {
		t.Fatalf("foreign delegate: %+v, %v, ran %v", res, err, f.ran)
	}
}

func TestEnvLookup(t *testing.T) {
	getenv, environ := EnvLookup([]string{"A=1", "B=2", "A=3", "C=x=y", "D"})
	if getenv("A") != "3" || getenv("C") != "x=y" || getenv("D") != "" || getenv("Z") != "" {
		t.Errorf("getenv: A=%q C=%q", getenv("A"), getenv("C"))
	}
	if got := strings.Join(environ(), ","); got != "A=3,B=2,C=x=y,D" {
		t.Errorf("environ = %s", got)
	}
	e := environ()
	e[0] = "changed"
	if environ()[0] != "A=3" {
		t.Error("environ returned shared storage")
	}
}
