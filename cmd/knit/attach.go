package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/knit-cni/knit/internal/netns"
	"github.com/knit-cni/knit/pkg/cni"
	"github.com/knit-cni/knit/pkg/cni/runtime"
)

// newCNI returns the runtime library configured by the global options.
func (g *globals) newCNI() *runtime.CNI {
	return runtime.New(runtime.Config{Paths: g.paths(), CacheDir: g.cacheDir})
}

// loadNetwork finds NET: a path to a .conflist/.conf/.json file, or the name
// of a network configured in the conf dir.
func (g *globals) loadNetwork(net string) (*cni.NetworkConfigList, error) {
	if looksLikePath(net) {
		return loadNetworkFile(net)
	}
	if err := cni.ValidateNetworkName(net); err != nil {
		return nil, err
	}
	list, err := runtime.LoadConfList(g.confDir, net)
	if err != nil {
		return nil, fmt.Errorf("network %q: %w (networks are read from %s; set --conf-dir or NETCONFPATH, or give a path to a config file)",
			net, err, g.confDir)
	}
	return list, nil
}

func looksLikePath(s string) bool {
	if strings.ContainsRune(s, '/') {
		return true
	}
	switch filepath.Ext(s) {
	case ".conflist", ".conf", ".json":
		_, err := os.Stat(s)
		return err == nil
	}
	return false
}

// loadNetworkFile reads a network configuration file: a list if it has a
// "plugins" key, otherwise a single-plugin config wrapped in a list.
func loadNetworkFile(path string) (*cni.NetworkConfigList, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, cni.NewError(cni.ErrIOFailure, "reading network configuration", err.Error())
	}
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, fmt.Errorf("%s: %w", path, cni.NewError(cni.ErrDecodingFailure, "error parsing network configuration", err.Error()))
	}
	if _, ok := probe["plugins"]; ok {
		list, err := cni.ParseConfigList(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return list, nil
	}
	pc, err := cni.ParsePluginConfig(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	list, err := cni.ConfListFromConf(pc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return list, nil
}

// attachFlags are the per-attachment options of add, check and del.
type attachFlags struct {
	netns   string
	ifname  string
	args    string
	capArgs string
}

func (f *attachFlags) register(cmd *cobra.Command, g *globals) {
	fl := cmd.Flags()
	fl.StringVar(&f.netns, "netns", "", "the container's network namespace: a path, or a name under "+netns.DefaultDir)
	fl.StringVarP(&f.ifname, "ifname", "i", firstNonEmpty(g.getenv("CNI_IFNAME"), "eth0"), "interface name inside the container (env CNI_IFNAME)")
	fl.StringVar(&f.args, "args", g.getenv("CNI_ARGS"), `CNI_ARGS for the plugins: "K1=V1;K2=V2" (env CNI_ARGS)`)
	fl.StringVar(&f.capArgs, "cap-args", g.getenv("CAP_ARGS"), `capability arguments as a JSON object, e.g. '{"portMappings":[...]}' (env CAP_ARGS)`)
}

// runtimeConf validates the options and builds the attachment's RuntimeConf.
// needNetns says the namespace must be given and exist (ADD, CHECK).
func (f *attachFlags) runtimeConf(containerID string, needNetns bool) (*runtime.RuntimeConf, error) {
	if err := cni.ValidateContainerID(containerID); err != nil {
		return nil, fmt.Errorf("container ID %q: %w", containerID, err)
	}
	if err := cni.ValidateInterfaceName(f.ifname); err != nil {
		return nil, fmt.Errorf("--ifname %q: %w", f.ifname, err)
	}
	rt := &runtime.RuntimeConf{ContainerID: containerID, IfName: f.ifname}
	args, err := parseArgs(f.args)
	if err != nil {
		return nil, err
	}
	rt.Args = args
	if f.capArgs != "" {
		caps, err := parseCapArgs(f.capArgs)
		if err != nil {
			return nil, err
		}
		rt.CapabilityArgs = caps
	}
	switch {
	case f.netns != "" && needNetns:
		p, err := resolveNetns(f.netns)
		if err != nil {
			return nil, cni.NewError(cni.ErrInvalidNetNS, "bad --netns", err.Error())
		}
		rt.NetNS = p
	case f.netns != "":
		rt.NetNS = f.netns
		if !strings.Contains(f.netns, "/") {
			rt.NetNS = netns.Path("", f.netns)
		}
	case needNetns:
		return nil, usagef("--netns is required: give the container's namespace (a path such as /proc/PID/ns/net, or a name from knit netns ls)")
	}
	return rt, nil
}

// parseArgs parses --args ("K1=V1;K2=V2").
func parseArgs(s string) ([][2]string, error) {
	if s == "" {
		return nil, nil
	}
	pairs, err := cni.ParseArgs(s)
	if err != nil {
		return nil, fmt.Errorf("--args %q: %w", s, addDetails(err, `write pairs as K1=V1;K2=V2`))
	}
	for _, p := range pairs {
		if p[0] == "" {
			return nil, fmt.Errorf("--args %q: %w", s, cni.NewError(cni.ErrInvalidEnvironmentVariables,
				"ARGS: empty key", "write pairs as K1=V1;K2=V2"))
		}
	}
	return pairs, nil
}

// parseCapArgs parses --cap-args, a JSON object.
func parseCapArgs(s string) (map[string]any, error) {
	var caps map[string]any
	if err := json.Unmarshal([]byte(s), &caps); err != nil || caps == nil {
		detail := "give a JSON object such as '{\"portMappings\":[{\"hostPort\":8080,\"containerPort\":80,\"protocol\":\"tcp\"}]}'"
		if err != nil {
			detail = err.Error() + "; " + detail
		}
		return nil, cni.NewError(cni.ErrDecodingFailure, "--cap-args is not a JSON object", detail)
	}
	return caps, nil
}

// addDetails appends a hint to a CNI error's details.
func addDetails(err error, hint string) error {
	var ce *cni.Error
	if !errors.As(err, &ce) {
		return fmt.Errorf("%w (%s)", err, hint)
	}
	c := *ce
	if c.Details != "" {
		c.Details += "; "
	}
	c.Details += hint
	return &c
}

// fillFromCache completes rt with what the result cache remembers of the
// attachment made by ADD: its CNI_ARGS and capability arguments (unless
// given on the command line) and its namespace (unless given).
func fillFromCache(c *runtime.CNI, list *cni.NetworkConfigList, rt *runtime.RuntimeConf, f *attachFlags, cmd *cobra.Command) error {
	_, cached, err := c.GetNetworkListCachedConfig(list, rt)
	if err != nil {
		return fmt.Errorf("reading the cached attachment: %w", err)
	}
	if cached == nil {
		return nil
	}
	if !cmd.Flags().Changed("args") && f.args == "" {
		rt.Args = cached.Args
	}
	if !cmd.Flags().Changed("cap-args") && f.capArgs == "" {
		rt.CapabilityArgs = cached.CapabilityArgs
	}
	if rt.NetNS == "" {
		rt.NetNS = cached.NetNS
		if rt.NetNS == "" {
			atts, err := c.GetCachedAttachments(rt.ContainerID)
			if err == nil {
				for _, a := range atts {
					if a.NetworkName == list.Name && a.IfName == rt.IfName {
						rt.NetNS = a.NetNS
					}
				}
			}
		}
	}
	return nil
}

func newAddCmd(g *globals) *cobra.Command {
	var f attachFlags
	cmd := &cobra.Command{
		Use:   "add NET CONTAINER-ID --netns PATH [--ifname eth0] [--args K=V;…] [--cap-args JSON]",
		Short: "Attach a container's namespace to a network and print the result",
		Long: `Attach a container's network namespace to the network NET (a network name from
the conf dir, or a path to a .conflist/.conf file): run every plugin's ADD in
order, cache the result and print it as JSON.

If ADD fails part-way, run "knit del" with the same arguments to release what
the plugins that succeeded have set up.`,
		Args: exactArgs(2, "NET and CONTAINER-ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			list, err := g.loadNetwork(args[0])
			if err != nil {
				return err
			}
			rt, err := f.runtimeConf(args[1], true)
			if err != nil {
				return err
			}
			ctx, cancel := g.context(cmd.Context())
			defer cancel()
			res, err := g.newCNI().AddNetworkList(ctx, list, rt)
			if err != nil {
				return fmt.Errorf("adding %s/%s to network %q: %w", rt.ContainerID, rt.IfName, list.Name, err)
			}
			out, err := res.Print(resultVersion(res, list))
			if err != nil {
				return fmt.Errorf("printing the result: %w", err)
			}
			_, err = g.stdout.Write(out)
			return err
		},
	}
	f.register(cmd, g)
	return cmd
}

// resultVersion is the version a result is printed in: its own, or the
// network's if it carries none.
func resultVersion(res *cni.Result, list *cni.NetworkConfigList) string {
	return firstNonEmpty(res.CNIVersion, list.CNIVersion)
}

// cachedAttachment loads NET (args[0]) and the runtime config of
// CONTAINER-ID (args[1]) for DEL and CHECK, filling what the flags leave
// out (namespace, CNI_ARGS, capability arguments) from the result cache.
func (g *globals) cachedAttachment(cmd *cobra.Command, args []string, f *attachFlags) (*cni.NetworkConfigList, *runtime.RuntimeConf, *runtime.CNI, error) {
	list, err := g.loadNetwork(args[0])
	if err != nil {
		return nil, nil, nil, err
	}
	rt, err := f.runtimeConf(args[1], false)
	if err != nil {
		return nil, nil, nil, err
	}
	c := g.newCNI()
	if err := fillFromCache(c, list, rt, f, cmd); err != nil {
		return nil, nil, nil, err
	}
	return list, rt, c, nil
}

func newDelCmd(g *globals) *cobra.Command {
	var f attachFlags
	cmd := &cobra.Command{
		Use:   "del NET CONTAINER-ID [--netns PATH] [--ifname eth0] [--args K=V;…] [--cap-args JSON]",
		Short: "Detach a container from a network",
		Long: `Detach a container from the network NET: run every plugin's DEL in reverse
order and remove the cached result. The namespace, CNI_ARGS and capability
arguments used at ADD are taken from the cache unless given; the namespace
may already be gone.`,
		Args: exactArgs(2, "NET and CONTAINER-ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			list, rt, c, err := g.cachedAttachment(cmd, args, &f)
			if err != nil {
				return err
			}
			ctx, cancel := g.context(cmd.Context())
			defer cancel()
			if err := c.DelNetworkList(ctx, list, rt); err != nil {
				return fmt.Errorf("deleting %s/%s from network %q: %w", rt.ContainerID, rt.IfName, list.Name, err)
			}
			return nil
		},
	}
	f.register(cmd, g)
	return cmd
}

func newCheckCmd(g *globals) *cobra.Command {
	var f attachFlags
	cmd := &cobra.Command{
		Use:   "check NET CONTAINER-ID --netns PATH [--ifname eth0] [--args K=V;…] [--cap-args JSON]",
		Short: "Check that a container's attachment to a network is intact",
		Long: `Run every plugin's CHECK against the cached result of the attachment. CNI_ARGS,
capability arguments and the namespace default to those used at ADD.`,
		Args: exactArgs(2, "NET and CONTAINER-ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			list, rt, c, err := g.cachedAttachment(cmd, args, &f)
			if err != nil {
				return err
			}
			if rt.NetNS == "" {
				return usagef("--netns is required: no attachment of %s/%s to %q is cached", rt.ContainerID, rt.IfName, list.Name)
			}
			if err := netns.Check(rt.NetNS); err != nil {
				return cni.NewError(cni.ErrInvalidNetNS, "the container's namespace is unusable", err.Error())
			}
			ctx, cancel := g.context(cmd.Context())
			defer cancel()
			if err := c.CheckNetworkList(ctx, list, rt); err != nil {
				return fmt.Errorf("checking %s/%s on network %q: %w", rt.ContainerID, rt.IfName, list.Name, err)
			}
			fmt.Fprintf(g.stdout, "%s/%s on %s: ok\n", rt.ContainerID, rt.IfName, list.Name)
			return nil
		},
	}
	f.register(cmd, g)
	return cmd
}

func newGCCmd(g *globals) *cobra.Command {
	var keep []string
	cmd := &cobra.Command{
		Use:   "gc NET [--keep CONTAINER-ID/IFNAME ...]",
		Short: "Remove a network's stale attachments and let its plugins release leftovers",
		Long: `Garbage-collect the network NET. The valid attachments are the --keep list if
given, otherwise every cached attachment of NET whose namespace still exists
or is not recorded (caches of older runtimes such as containerd 1.6 or Podman 4
do not record it; give --keep to collect those).
Cached attachments not valid are deleted (DEL), then every plugin's GC runs
with the valid list (networks at CNI 1.1.0 or later).`,
		Args: exactArgs(1, "NET"),
		RunE: func(cmd *cobra.Command, args []string) error {
			list, err := g.loadNetwork(args[0])
			if err != nil {
				return err
			}
			c := g.newCNI()
			valid := []cni.GCAttachment{}
			if cmd.Flags().Changed("keep") {
				for _, k := range keep {
					id, ifname, ok := strings.Cut(k, "/")
					if !ok {
						return usagef("--keep %q: write CONTAINER-ID/IFNAME, e.g. --keep abc123/eth0", k)
					}
					if err := cni.ValidateContainerID(id); err != nil {
						return fmt.Errorf("--keep %q: %w", k, err)
					}
					if err := cni.ValidateInterfaceName(ifname); err != nil {
						return fmt.Errorf("--keep %q: %w", k, err)
					}
					valid = append(valid, cni.GCAttachment{ContainerID: id, IfName: ifname})
				}
			} else {
				atts, err := c.GetCachedAttachments("")
				if err != nil {
					return fmt.Errorf("reading the result cache in %s: %w", g.cacheDir, err)
				}
				for _, a := range atts {
					if a.NetworkName != list.Name {
						continue
					}
					if a.NetNS == "" {
						// Caches written by older runtimes (containerd 1.6 and
						// Podman 4 use a libcni that does not record the
						// namespace): liveness is unknown, so keep it.
						slog.Warn("attachment's namespace is not cached: kept (name the live ones with --keep to collect it)",
							"container", a.ContainerID, "ifname", a.IfName)
					} else if netns.Check(a.NetNS) != nil {
						continue
					}
					valid = append(valid, cni.GCAttachment{ContainerID: a.ContainerID, IfName: a.IfName})
				}
			}
			ctx, cancel := g.context(cmd.Context())
			defer cancel()
			if err := c.GCNetworkList(ctx, list, &runtime.GCArgs{ValidAttachments: valid}); err != nil {
				return fmt.Errorf("garbage-collecting network %q: %w", list.Name, err)
			}
			fmt.Fprintf(g.stdout, "%s: gc done, %d attachment(s) kept\n", list.Name, len(valid))
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&keep, "keep", nil, "an attachment to keep, as CONTAINER-ID/IFNAME (repeatable)")
	return cmd
}

func newStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status NET",
		Short: "Ask a network's plugins whether they are ready for ADD",
		Args:  exactArgs(1, "NET"),
		RunE: func(cmd *cobra.Command, args []string) error {
			list, err := g.loadNetwork(args[0])
			if err != nil {
				return err
			}
			ctx, cancel := g.context(cmd.Context())
			defer cancel()
			if err := g.newCNI().GetStatusNetworkList(ctx, list); err != nil {
				return fmt.Errorf("network %q is not ready: %w", list.Name, err)
			}
			note := ""
			if !cni.VersionAtLeast(list.CNIVersion, "1.1.0") {
				note = fmt.Sprintf(" (cniVersion %s has no STATUS; assumed ready)", list.CNIVersion)
			}
			fmt.Fprintf(g.stdout, "%s: ready%s\n", list.Name, note)
			return nil
		},
	}
}

func newVersionCmd(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "version TYPE",
		Short: "Show the spec versions a plugin supports",
		Args:  exactArgs(1, "a plugin TYPE (e.g. bridge)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if err := cni.ValidatePluginType(args[0]); err != nil {
				return err
			}
			ctx, cancel := g.context(cmd.Context())
			defer cancel()
			vi, err := g.newCNI().GetVersionInfo(ctx, args[0])
			if err != nil {
				return fmt.Errorf("plugin %q (looked up in %s): %w", args[0], g.cniPath, err)
			}
			if output == "json" {
				return writeJSON(g.stdout, vi)
			}
			fmt.Fprintf(g.stdout, "%s: cniVersion %s; supports %s\n", args[0], vi.CNIVersion, strings.Join(vi.SupportedVersions, ", "))
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: \"\" (text) or json")
	return cmd
}
