package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/knit-cni/knit/internal/netns"
	"github.com/knit-cni/knit/pkg/cni"
	"github.com/knit-cni/knit/pkg/cni/runtime"
)

func newRunCmd(g *globals) *cobra.Command {
	var nets []string
	var name, args, capArgs string
	cmd := &cobra.Command{
		Use:   "run --net NET [--net NET2 ...] [--name N] -- CMD [ARGS...]",
		Short: "Run a command in a new namespace attached to networks, then clean up",
		Long: `Create a network namespace, attach it to each network in order (as eth0, eth1,
…), and run the command inside with your stdin, stdout and stderr. When the
command exits, every attachment is deleted (in reverse order) and the
namespace removed. Ctrl-C, SIGTERM, SIGHUP and SIGQUIT are passed to the
command; knit waits for it, cleans up, and exits with its status (128+N if
signal N ended it).

The namespace is /run/netns/NAME and NAME is also the container ID, so
"knit ls" and "knit netns ls" show it while the command runs.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, argv []string) error {
			if len(nets) == 0 {
				return usagef("give at least one --net NET to attach the command's namespace to")
			}
			if cmd.ArgsLenAtDash() != 0 {
				return usagef("put the command after --, e.g. knit run --net mynet -- ip addr")
			}
			if name == "" {
				name = randomName()
			}
			if err := cni.ValidateContainerID(name); err != nil {
				return fmt.Errorf("--name %q: %w", name, err)
			}
			f := attachFlags{args: args, capArgs: capArgs}
			var lists []*cni.NetworkConfigList
			var rts []*runtime.RuntimeConf
			for i, n := range nets {
				list, err := g.loadNetwork(n)
				if err != nil {
					return err
				}
				f.ifname = fmt.Sprintf("eth%d", i)
				rt, err := f.runtimeConf(name, false)
				if err != nil {
					return err
				}
				lists, rts = append(lists, list), append(rts, rt)
			}
			child, err := commandFor(g, argv)
			if err != nil {
				return err
			}
			r := &runner{g: g, c: g.newCNI(), name: name, lists: lists, rts: rts}
			return r.run(cmd.Context(), child)
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&nets, "net", nil, "network to attach (name or config path); repeat for eth1, eth2, …")
	fl.StringVar(&name, "name", "", "namespace name and container ID (default knit-<random>)")
	fl.StringVar(&args, "args", "", `CNI_ARGS for the plugins: "K1=V1;K2=V2"`)
	fl.StringVar(&capArgs, "cap-args", "", "capability arguments as a JSON object")
	return cmd
}

func randomName() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "knit-" + hex.EncodeToString(b)
}

// runner holds the state of one `knit run`.
type runner struct {
	g        *globals
	c        *runtime.CNI
	name     string
	lists    []*cni.NetworkConfigList
	rts      []*runtime.RuntimeConf
	nsPath   string
	attached int // attachments to delete: every ADD tried, failed ones too
}

// run creates the namespace, attaches it, runs the child and cleans up.
// Signals are caught from the start, so one arriving while the networks are
// being attached stops the setup and still cleans up.
func (r *runner) run(parent context.Context, child *exec.Cmd) error {
	sigs, stop := notifySignals()
	defer stop()

	path, err := netns.Create("", r.name)
	if err != nil {
		return err
	}
	r.nsPath = path
	slog.Info("created namespace", "path", path)

	sig, err := r.attach(parent, sigs)
	if err != nil || sig != nil {
		cerr := r.cleanup(parent)
		if err != nil {
			return errors.Join(err, cerr)
		}
		return &exitError{code: signalStatus(sig), err: cerr}
	}

	p, err := startInNetns(path, child)
	if err != nil {
		return errors.Join(err, r.cleanup(parent))
	}
	status, werr := p.wait(sigs)
	cerr := r.cleanup(parent)
	if err := errors.Join(werr, cerr); err != nil {
		if status == 0 {
			status = 1
		}
		return &exitError{code: status, err: err}
	}
	if status != 0 {
		return &exitError{code: status}
	}
	return nil
}

// attach adds the namespace to every network in order. It stops early if a
// signal arrives (returning it) or an ADD fails.
func (r *runner) attach(parent context.Context, sigs <-chan os.Signal) (os.Signal, error) {
	ctx, cancel := r.g.context(parent)
	defer cancel()
	var got os.Signal
	var mu sync.Mutex
	done := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case s := <-sigs:
			mu.Lock()
			got = s
			mu.Unlock()
			cancel()
		case <-done:
		}
	}()
	defer func() { close(done); <-watched }()

	for i, list := range r.lists {
		rt := *r.rts[i]
		rt.NetNS = r.nsPath
		r.rts[i] = &rt
		r.attached = i + 1 // a failed ADD is still DELeted, as the spec asks
		res, err := r.c.AddNetworkList(ctx, list, &rt)
		mu.Lock()
		s := got
		mu.Unlock()
		if s != nil {
			slog.Info("interrupted while attaching", "signal", s, "network", list.Name)
			return s, nil
		}
		if err != nil {
			return nil, fmt.Errorf("attaching %s to network %q as %s: %w", r.name, list.Name, rt.IfName, err)
		}
		var addrs []string
		for _, ip := range res.IPs {
			addrs = append(addrs, ip.Address.String())
		}
		slog.Info("attached", "network", list.Name, "ifname", rt.IfName, "addresses", addrs)
	}
	return nil, nil
}

// cleanup deletes the attachments in reverse order and then the namespace.
// It runs with its own deadline, even when parent is cancelled.
func (r *runner) cleanup(parent context.Context) error {
	ctx, cancel := r.g.context(context.WithoutCancel(parent))
	defer cancel()
	var errs []error
	for i := r.attached - 1; i >= 0; i-- {
		list, rt := r.lists[i], r.rts[i]
		if err := r.c.DelNetworkList(ctx, list, rt); err != nil {
			errs = append(errs, fmt.Errorf("cleaning up: deleting %s/%s from network %q: %w (retry with knit del %s %s --ifname %s)",
				rt.ContainerID, rt.IfName, list.Name, err, list.Name, rt.ContainerID, rt.IfName))
		}
	}
	if err := netns.DeletePath(r.nsPath); err != nil {
		errs = append(errs, fmt.Errorf("cleaning up: %w (remove it with knit netns del %s)", err, r.name))
	}
	slog.Info("cleaned up", "namespace", r.nsPath, "errors", len(errs))
	return errors.Join(errs...)
}

// signalStatus is the shell's exit status for a process ended by sig.
func signalStatus(sig os.Signal) int {
	if s, ok := sig.(syscall.Signal); ok {
		return 128 + int(s)
	}
	return 1
}
