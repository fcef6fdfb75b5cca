package invoke

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"syscall"
	"time"

	"github.com/knit-cni/knit/pkg/cni"
)

// Exec runs plugin binaries. RawExec is the real one; tests substitute
// fakes.
type Exec interface {
	// ExecPlugin runs the binary at pluginPath with stdin and env and returns
	// its stdout. A failed plugin is an error, normally a *cni.Error.
	ExecPlugin(ctx context.Context, pluginPath string, stdin []byte, env []string) ([]byte, error)
	// FindInPath finds a plugin binary by type along paths.
	FindInPath(plugin string, paths []string) (string, error)
}

// RawExec executes plugin binaries as child processes. Cancelling the
// context kills the plugin.
type RawExec struct {
	// Stderr receives what a successful plugin wrote to stderr (its logs);
	// nil discards it. A failed plugin's stderr goes into its error instead.
	Stderr io.Writer
}

// busyRetries bounds the retries when the binary is still open for writing
// ("text file busy"), which happens right after a plugin was installed.
const (
	busyRetries = 5
	busyWait    = time.Second
	// waitDelay bounds how long a finished or killed plugin's leftover
	// children may hold its stdout/stderr open.
	waitDelay = 5 * time.Second
)

// ExecPlugin implements Exec.
func (e *RawExec) ExecPlugin(ctx context.Context, pluginPath string, stdin []byte, env []string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	var err error
	for attempt := 0; ; attempt++ {
		stdout.Reset()
		stderr.Reset()
		c := exec.CommandContext(ctx, pluginPath)
		c.Env = env
		c.Stdin = bytes.NewReader(stdin)
		c.Stdout = &stdout
		c.Stderr = &stderr
		c.WaitDelay = waitDelay
		err = c.Run()
		if err == nil || !errors.Is(err, syscall.ETXTBSY) || attempt >= busyRetries {
			break
		}
		select {
		case <-ctx.Done():
			return nil, cni.NewError(cni.ErrTryAgainLater, fmt.Sprintf("plugin %s is busy (text file busy)", pluginPath), ctx.Err().Error())
		case <-time.After(busyWait):
		}
	}
	if errors.Is(err, exec.ErrWaitDelay) {
		// The plugin exited 0 but left a process holding its output open;
		// what it printed before exiting is complete.
		err = nil
	}
	if err != nil {
		var exitErr *exec.ExitError
		if !errors.As(err, &exitErr) && ctx.Err() == nil {
			// The binary never ran (not executable, bad format, ...).
			return nil, cni.NewError(cni.ErrPluginNotAvailable, fmt.Sprintf("cannot execute plugin %s", pluginPath), err.Error())
		}
		pe := pluginErr(err, stdout.Bytes(), stderr.Bytes())
		if ctx.Err() != nil && pe.Details == "" {
			pe.Details = fmt.Sprintf("plugin %s was stopped: %v", pluginPath, ctx.Err())
		}
		return nil, pe
	}
	if e.Stderr != nil && stderr.Len() > 0 {
		_, _ = e.Stderr.Write(stderr.Bytes())
	}
	return stdout.Bytes(), nil
}

// FindInPath implements Exec with the package's FindInPath.
func (e *RawExec) FindInPath(plugin string, paths []string) (string, error) {
	return FindInPath(plugin, paths)
}

// pluginErr turns a failed plugin's output into its error object, exactly as
// the reference runtime does: the error JSON on stdout (code kept), else the
// stderr text, else just the exit status.
func pluginErr(err error, stdout, stderr []byte) *cni.Error {
	e := &cni.Error{}
	switch {
	case len(stdout) == 0 && len(stderr) == 0:
		e.Msg = fmt.Sprintf("netplugin failed with no error message: %v", err)
	case len(stdout) == 0:
		e.Msg = fmt.Sprintf("netplugin failed: %q: %v", stderr, err)
	default:
		if perr := json.Unmarshal(stdout, e); perr != nil {
			e = &cni.Error{Msg: fmt.Sprintf("netplugin failed but error parsing its diagnostic message %q: %v", stdout, perr)}
		}
	}
	return e
}
