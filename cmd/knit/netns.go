package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/knit-cni/knit/internal/netns"
)

func newNetnsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "netns",
		Short: "Manage named network namespaces (like ip netns)",
		Long: `Manage named network namespaces under ` + netns.DefaultDir + `, exactly as
"ip netns" makes them, so iproute2 and other runtimes see the same ones.`,
	}
	cmd.AddCommand(newNetnsAddCmd(g), newNetnsDelCmd(g), newNetnsLsCmd(g), newNetnsExecCmd(g))
	return cmd
}

func newNetnsAddCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "add NAME",
		Short: "Create a named network namespace and print its path",
		Args:  exactArgs(1, "a namespace NAME"),
		RunE: func(_ *cobra.Command, args []string) error {
			path, err := netns.Create("", args[0])
			if err != nil {
				return err
			}
			fmt.Fprintln(g.stdout, path)
			return nil
		},
	}
}

func newNetnsDelCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "del NAME...",
		Aliases: []string{"delete", "rm"},
		Short:   "Delete named network namespaces",
		Long: `Delete named network namespaces. Interfaces still inside are destroyed by the
kernel (veth peers with them); CNI attachments should be removed first with
"knit del" so plugins release their addresses and host-side state.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			for _, name := range args {
				if err := checkNetnsName(name); err != nil {
					return err
				}
				path := netns.Path("", name)
				if _, err := os.Lstat(path); err != nil {
					return fmt.Errorf("no network namespace %q in %s (see knit netns ls)", name, netns.DefaultDir)
				}
				if err := netns.DeletePath(path); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

func newNetnsLsCmd(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List named network namespaces",
		Args:    exactArgs(0, "no arguments"),
		RunE: func(_ *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			names, err := netns.List("")
			if err != nil {
				return fmt.Errorf("listing %s: %w", netns.DefaultDir, err)
			}
			if output == "json" {
				type entry struct {
					Name string `json:"name"`
					Path string `json:"path"`
				}
				out := []entry{}
				for _, n := range names {
					out = append(out, entry{n, netns.Path("", n)})
				}
				return writeJSON(g.stdout, out)
			}
			for _, n := range names {
				fmt.Fprintln(g.stdout, n)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", `output format: "" (names) or json`)
	return cmd
}

func newNetnsExecCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "exec NAME|PATH -- CMD [ARGS...]",
		Short: "Run a command inside a network namespace with your stdio",
		Long: `Run a command inside a network namespace, with the caller's stdin, stdout and
stderr. Signals knit receives (INT, TERM, HUP, QUIT) are passed to the command,
and knit exits with its status (128+N if signal N ended it). /sys is remounted
for the command so /sys/class/net lists the namespace's interfaces.`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(_ *cobra.Command, args []string) error {
			nsPath, err := resolveNetns(args[0])
			if err != nil {
				return err
			}
			c, err := commandFor(g, args[1:])
			if err != nil {
				return err
			}
			sigs, stop := notifySignals()
			defer stop()
			p, err := startInNetns(nsPath, c)
			if err != nil {
				return err
			}
			status, err := p.wait(sigs)
			if err != nil {
				return err
			}
			if status != 0 {
				return &exitError{code: status}
			}
			return nil
		},
	}
}

// resolveNetns turns a namespace name (under /run/netns) or a path into a
// path of an existing network namespace.
func resolveNetns(arg string) (string, error) {
	path := arg
	if !strings.Contains(arg, "/") {
		if err := checkNetnsName(arg); err != nil {
			return "", err
		}
		path = netns.Path("", arg)
	}
	if err := netns.Check(path); err != nil {
		if netns.IsNotExist(err) && !strings.Contains(arg, "/") {
			return "", fmt.Errorf("no network namespace %q in %s: create it with knit netns add, or give a path", arg, netns.DefaultDir)
		}
		return "", err
	}
	return path, nil
}

func checkNetnsName(name string) error {
	if name == "" || name == "." || name == ".." || strings.Contains(name, "/") {
		return fmt.Errorf("invalid namespace name %q: use a plain file name", name)
	}
	return nil
}

func checkOutput(o string) error {
	if o != "" && o != "json" && o != "table" {
		return usagef("invalid --output %q: use json (or leave it out for a table)", o)
	}
	return nil
}

func writeJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
