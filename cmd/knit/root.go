package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/knit-cni/knit/pkg/cni"
)

// Defaults, as every CNI runtime uses them.
const (
	defaultConfDir  = "/etc/cni/net.d"
	defaultCNIPath  = "/opt/cni/bin"
	defaultCacheDir = "/var/lib/cni"
	defaultTimeout  = 60 * time.Second
)

// globals holds the options every verb shares. Flags win over the
// environment (NETCONFPATH, CNI_PATH), which wins over the defaults.
type globals struct {
	confDir  string
	cniPath  string
	cacheDir string
	timeout  time.Duration
	logLevel string

	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
}

// exitError ends the process with a given status and, if err is set, an
// error message. `knit run` uses it to pass on the child's exit status.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err != nil {
		return e.err.Error()
	}
	return fmt.Sprintf("exit status %d", e.code)
}

func (e *exitError) Unwrap() error { return e.err }

// usageError marks a mistake in the command line (exit status 2).
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// newRootCmd builds the whole command tree around g.
func newRootCmd(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "knit",
		Short: "knit is a CNI runtime: attach network namespaces to CNI networks",
		Long: `knit runs CNI plugins the way container runtimes do: it loads a network
configuration (a .conflist in the conf dir, or a file), executes the plugins
found on the CNI path, and keeps the results in the cache dir, in the same
layout as the reference libcni so other runtimes and cnitool interoperate.

It also manages named network namespaces (like "ip netns"), runs a command in
a namespace attached to networks ("knit run"), and installs the knit plugins
for any runtime to use ("knit install").`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return g.setup(cmd)
		},
	}
	root.SetIn(g.stdin)
	root.SetOut(g.stdout)
	root.SetErr(g.stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &usageError{fmt.Errorf("%w (see --help)", err)}
	})

	pf := root.PersistentFlags()
	pf.StringVar(&g.confDir, "conf-dir", "", "directory of network configurations (env NETCONFPATH, default "+defaultConfDir+")")
	pf.StringVar(&g.cniPath, "cni-path", "", "colon-separated directories holding plugin binaries (env CNI_PATH, default "+defaultCNIPath+")")
	pf.StringVar(&g.cacheDir, "cache-dir", "", "directory of the result cache (default "+defaultCacheDir+")")
	pf.DurationVar(&g.timeout, "timeout", defaultTimeout, "deadline for each network operation")
	pf.StringVar(&g.logLevel, "log-level", "warn", "log level on stderr: debug, info, warn or error")

	root.AddCommand(
		newAddCmd(g), newDelCmd(g), newCheckCmd(g),
		newGCCmd(g), newStatusCmd(g), newVersionCmd(g),
		newLsCmd(g), newRunCmd(g), newNetnsCmd(g), newInstallCmd(g),
		newDemoCmd(g),
		newDHCPCmd(g),
	)
	return root
}

// setup resolves the shared options from flags, environment and defaults,
// and configures logging.
func (g *globals) setup(cmd *cobra.Command) error {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
		return usagef("invalid --log-level %q: use debug, info, warn or error", g.logLevel)
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: lvl})))
	if g.timeout <= 0 {
		return usagef("invalid --timeout %s: give a positive duration such as 30s", g.timeout)
	}
	if !cmd.Flags().Changed("conf-dir") {
		g.confDir = firstNonEmpty(g.getenv("NETCONFPATH"), defaultConfDir)
	}
	if !cmd.Flags().Changed("cni-path") {
		g.cniPath = firstNonEmpty(g.getenv("CNI_PATH"), defaultCNIPath)
	}
	if !cmd.Flags().Changed("cache-dir") {
		g.cacheDir = defaultCacheDir
	}
	slog.Debug("knit options", "confDir", g.confDir, "cniPath", g.cniPath, "cacheDir", g.cacheDir, "timeout", g.timeout)
	return nil
}

// paths returns the CNI path as a list of directories.
func (g *globals) paths() []string {
	var out []string
	for _, p := range filepath.SplitList(g.cniPath) {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

// context returns a context with the --timeout deadline.
func (g *globals) context(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, g.timeout)
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// formatError renders err for the user. A CNI error object inside it comes
// out as "<msg>: <details>", with " (CNI error code N)" at the end.
func formatError(err error) string {
	text := err.Error()
	var ce *cni.Error
	if !errors.As(err, &ce) {
		return text
	}
	msg := ce.Msg
	if ce.Details != "" {
		msg += ": " + ce.Details
	}
	if i := strings.LastIndex(text, ce.Error()); i >= 0 {
		text = text[:i] + msg + text[i+len(ce.Error()):]
	}
	return fmt.Sprintf("%s (CNI error code %d)", text, ce.Code)
}

// execute runs the command line args and returns the process exit status.
func execute(ctx context.Context, g *globals, args []string) int {
	root := newRootCmd(g)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintf(g.stderr, "knit: %s\n", formatError(ee.err))
		}
		return ee.code
	}
	fmt.Fprintf(g.stderr, "knit: %s\n", formatError(err))
	var ue *usageError
	if errors.As(err, &ue) || isCobraUsageError(err) {
		return 2
	}
	return 1
}

// isCobraUsageError recognises cobra's own argument errors, which it does
// not type.
func isCobraUsageError(err error) bool {
	s := err.Error()
	return strings.HasPrefix(s, "unknown command") || strings.HasPrefix(s, "accepts ") ||
		strings.HasPrefix(s, "requires at least") || strings.HasPrefix(s, "unknown flag") ||
		strings.HasPrefix(s, "unknown shorthand flag")
}

// exactArgs is cobra.ExactArgs with a message naming the expected operands.
func exactArgs(n int, operands string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s needs %s, got %d argument(s) (see %s --help)", cmd.CommandPath(), operands, len(args), cmd.CommandPath())
		}
		return nil
	}
}
