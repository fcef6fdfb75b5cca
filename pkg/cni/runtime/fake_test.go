package runtime

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// binDir holds the test plugins TestMain builds: "fakeplugin" (from
// testdata/fakeplugin, see its doc) and "noop", the reference's test plugin
// used as an oracle.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "knit-runtime-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binDir = dir
	for _, b := range [][2]string{
		{"fakeplugin", "./testdata/fakeplugin"},
		{"noop", "github.com/containernetworking/cni/plugins/test/noop"},
	} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, b[0]), b[1])
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building %s: %v\n%s", b[1], err, out)
			return 1
		}
	}
	return m.Run()
}

// fakeAction tells the fake plugin what to do for one command.
type fakeAction struct {
	Result      json.RawMessage `json:"result,omitempty"`
	Passthrough bool            `json:"passthrough,omitempty"`
	ErrCode     uint            `json:"errCode,omitempty"`
	ErrMsg      string          `json:"errMsg,omitempty"`
	Stderr      string          `json:"stderr,omitempty"`
	Stdout      string          `json:"stdout,omitempty"`
	Exit        int             `json:"exit,omitempty"`
	SleepMS     int             `json:"sleepMS,omitempty"`
	Silent      bool            `json:"silent,omitempty"`
}

// record is one invocation logged by the fake plugin.
type record struct {
	Plugin  string            `json:"plugin"`
	Command string            `json:"command"`
	Env     map[string]string `json:"env"`
	Stdin   json.RawMessage   `json:"stdin"`
	Start   time.Time         `json:"start"`
	End     time.Time         `json:"end"`
}

// lab is a plugin directory with fake plugins, a cache dir and a log.
type lab struct {
	t        *testing.T
	pluginD  string
	cacheDir string
	log      string
}

func newLab(t *testing.T, plugins ...string) *lab {
	t.Helper()
	l := &lab{t: t, pluginD: t.TempDir(), cacheDir: t.TempDir()}
	l.log = filepath.Join(t.TempDir(), "log")
	for _, p := range plugins {
		if err := os.Symlink(filepath.Join(binDir, "fakeplugin"), filepath.Join(l.pluginD, p)); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

func (l *lab) cni() *CNI {
	return New(Config{Paths: []string{l.pluginD}, CacheDir: l.cacheDir})
}

// plugin returns a plugin object of type typ logging to the lab's log with
// the given per-command actions and extra keys.
func (l *lab) plugin(typ string, on map[string]fakeAction, extra map[string]any) map[string]any {
	p := map[string]any{"type": typ, "fake": map[string]any{"log": l.log, "on": on}}
	for k, v := range extra {
		p[k] = v
	}
	return p
}

// records returns and clears the log.
func (l *lab) records() []record {
	l.t.Helper()
	data, err := os.ReadFile(l.log)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		l.t.Fatal(err)
	}
	os.Remove(l.log)
	var out []record
	for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		var r record
		if err := json.Unmarshal(line, &r); err != nil {
			l.t.Fatalf("bad log line %s: %v", line, err)
		}
		out = append(out, r)
	}
	return out
}

// stdinMap decodes a record's stdin.
func (r record) stdinMap(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Stdin, &m); err != nil {
		t.Fatalf("stdin %s: %v", r.Stdin, err)
	}
	return m
}
