package invoke

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"

	"github.com/knit-cni/knit/pkg/cni"
)

// DelegateExec is the Exec the Delegate* functions use when they are given
// nil; nil means a RawExec forwarding a successful plugin's stderr to ours.
// A multi-call plugin binary sets it once at start-up (before any plugin
// runs) to an *InProcess so that delegating to a plugin built into the same
// binary costs a function call instead of an exec.
var DelegateExec Exec

// Runner runs the built-in plugin typ as its own process would run: env is
// its complete environment, stdin its configuration; it writes what the
// process would print to stdout and stderr and returns the exit code.
type Runner func(ctx context.Context, typ string, stdin []byte, env []string, stdout, stderr io.Writer) int

// InProcess is an Exec that runs plugins built into this very executable as
// function calls. A plugin path qualifies when it is the same file as the
// running executable (same device and inode, symlinks followed) and its base
// name is a type Has reports; every other plugin is run by Next. The outcome
// is mapped exactly as RawExec maps a process's exit code and output, so a
// caller cannot tell the difference.
//
// A plugin that panics does not take the caller down: the panic becomes an
// error with code 999 (cni.ErrInternal) and its stack is logged (slog).
// The plugin must not change process-wide state its caller relies on
// (working directory, slog default, os.Stdout); knit's plugins do not.
type InProcess struct {
	// Has reports whether typ is built into this executable and can run
	// in-process with env, the environment its process would get.
	Has func(typ string, env []string) bool
	// Run runs a built-in plugin.
	Run Runner
	// Next runs the plugins that are not built in; nil means RawExec with
	// Stderr.
	Next Exec
	// Stderr receives what a successful in-process plugin wrote to stderr,
	// like RawExec.Stderr; nil discards it.
	Stderr io.Writer
	// Self is the executable whose links qualify; "" means os.Executable().
	Self string

	selfOnce sync.Once
	self     os.FileInfo // nil when the executable cannot be found
}

// exitStatus is a plugin's non-zero exit code as an error worded like the
// one os/exec returns, so messages match RawExec's.
type exitStatus int

func (e exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// builtIn reports whether pluginPath should run in-process.
func (e *InProcess) builtIn(pluginPath string, env []string) bool {
	if e.Has == nil || e.Run == nil || !e.Has(filepath.Base(pluginPath), env) {
		return false
	}
	e.selfOnce.Do(func() {
		self := e.Self
		if self == "" {
			var err error
			if self, err = os.Executable(); err != nil {
				return
			}
		}
		if fi, err := os.Stat(self); err == nil {
			e.self = fi
		}
	})
	if e.self == nil {
		return false
	}
	fi, err := os.Stat(pluginPath)
	return err == nil && os.SameFile(fi, e.self)
}

func (e *InProcess) next() Exec {
	if e.Next != nil {
		return e.Next
	}
	return &RawExec{Stderr: e.Stderr}
}

// ExecPlugin implements Exec.
func (e *InProcess) ExecPlugin(ctx context.Context, pluginPath string, stdin []byte, env []string) ([]byte, error) {
	if !e.builtIn(pluginPath, env) {
		return e.next().ExecPlugin(ctx, pluginPath, stdin, env)
	}
	if err := ctx.Err(); err != nil {
		// RawExec's process would not have been started.
		return nil, &cni.Error{Msg: fmt.Sprintf("netplugin failed with no error message: %v", err),
			Details: fmt.Sprintf("plugin %s was stopped: %v", pluginPath, err)}
	}
	var stdout, stderr bytes.Buffer
	code, panicErr := e.run(ctx, pluginPath, stdin, env, &stdout, &stderr)
	if panicErr != nil {
		return nil, panicErr
	}
	if code != 0 {
		pe := pluginErr(exitStatus(code), stdout.Bytes(), stderr.Bytes())
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

// run calls the Runner, turning a panic into an error.
func (e *InProcess) run(ctx context.Context, pluginPath string, stdin []byte, env []string, stdout, stderr *bytes.Buffer) (code int, err *cni.Error) {
	typ := filepath.Base(pluginPath)
	defer func() {
		if r := recover(); r != nil {
			slog.Error("built-in plugin panicked", "plugin", typ, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			err = cni.NewError(cni.ErrInternal, fmt.Sprintf("plugin %s panicked: %v", typ, r),
				"this is a bug in the plugin; its stack was logged")
		}
	}()
	env = append([]string(nil), env...)
	return e.Run(ctx, typ, stdin, env, stdout, stderr), nil
}

// FindInPath implements Exec with Next's FindInPath.
func (e *InProcess) FindInPath(plugin string, paths []string) (string, error) {
	return e.next().FindInPath(plugin, paths)
}

// EnvLookup returns Getenv and Environ functions over a fixed environment
// (a later entry for the same key wins, as os/exec does), for running a plugin in-process
// with the environment its process would get.
func EnvLookup(env []string) (getenv func(string) string, environ func() []string) {
	m := make(map[string]string, len(env))
	index := make(map[string]int, len(env))
	var list []string
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
		if i, dup := index[k]; dup {
			list[i] = kv
			continue
		}
		index[k] = len(list)
		list = append(list, kv)
	}
	env = list
	return func(k string) string { return m[k] },
		func() []string { return append([]string(nil), env...) }
}
