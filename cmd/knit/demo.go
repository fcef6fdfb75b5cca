package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/knit-cni/knit/internal/demo"
)

// demoSandboxEnv marks the re-executed demo process that already runs in its
// own mount namespace.
const demoSandboxEnv = "KNIT_DEMO_SANDBOXED"

func newDemoCmd(g *globals) *cobra.Command {
	var from string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the \"Practical CNI\" talk's networks end to end in a sandbox, then clean up",
		Long: `demo builds a sandbox host network namespace, writes the talk's ptp network
("mynet", 10.1.1.0/24) and bridge network ("imthebestnetever" on "myawesomebr",
10.22.0.0/16, isDefaultGateway, ipMasq, hairpinMode) exactly as the talk wrote
them, attaches three container namespaces with knit's runtime and plugins, sends
real traffic between them, to the gateways and out through the masquerade,
prints the topology, and removes everything.

Nothing changes on the real host: the plugins run inside the sandbox namespace,
and the demo runs in a private mount namespace with its own /run/netns and
/var/lib/cni, so even an interrupted or killed demo leaves nothing behind.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if os.Getenv(demoSandboxEnv) != "1" {
				return reexecSandboxed(cmd.Context(), g)
			}
			return runDemoInSandbox(cmd.Context(), g, from)
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "the knit-plugin binary to use (default: beside the knit executable)")
	return cmd
}

// reexecSandboxed runs this same command line again in a new mount
// namespace (mount propagation private), passing signals on.
func reexecSandboxed(ctx context.Context, g *globals) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	c := exec.Command(exe, os.Args[1:]...)
	c.Env = append(os.Environ(), demoSandboxEnv+"=1")
	c.Stdin, c.Stdout, c.Stderr = g.stdin, g.stdout, g.stderr
	c.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	if err := c.Start(); err != nil {
		return fmt.Errorf("starting the sandboxed demo: %w (knit demo needs root)", err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	for {
		select {
		case s := <-sigs:
			c.Process.Signal(s)
		case err := <-done:
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				return &exitError{code: ee.ExitCode()}
			}
			return err
		}
	}
}

// runDemoInSandbox mounts private tmpfs state directories, installs the
// plugins into a temporary CNI_PATH, and runs the demo; SIGINT/SIGTERM cancel
// it and cleanup still runs.
func runDemoInSandbox(parent context.Context, g *globals, from string) error {
	for _, dir := range []string{"/run/netns", "/var/lib/cni"} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := unix.Mount("knit-demo", dir, "tmpfs", 0, "mode=0755,size=64m"); err != nil {
			return fmt.Errorf("mounting a private tmpfs on %s: %w (knit demo needs root)", dir, err)
		}
	}
	work, err := os.MkdirTemp("", "knit-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	if from == "" {
		if from, err = besideExecutable(pluginBinary); err != nil {
			return err
		}
	}
	pluginDir := filepath.Join(work, "bin")
	if _, err := install(parent, from, pluginDir, false); err != nil {
		return fmt.Errorf("installing the plugins for the demo: %w", err)
	}
	ctx, stop := signal.NotifyContext(parent, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return demo.Run(ctx, demo.Options{PluginDir: pluginDir, Out: g.stdout, WorkDir: work})
}
