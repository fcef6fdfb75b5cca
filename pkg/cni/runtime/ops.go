package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"

	"github.com/knit-cni/knit/pkg/cni"
	"github.com/knit-cni/knit/pkg/cni/invoke"
)

var errNilArgs = errors.New("runtime: nil network list or runtime configuration")

// checkList refuses a nil or empty list.
func checkList(list *cni.NetworkConfigList) error {
	if list == nil {
		return errNilArgs
	}
	if len(list.Plugins) == 0 {
		return cni.NewError(cni.ErrInvalidNetworkConfig, fmt.Sprintf("network %q has no plugins", list.Name),
			"add plugin objects to its \"plugins\" array")
	}
	return nil
}

// describe names a plugin in errors the way the reference does.
func describe(p *cni.PluginConfig) string {
	if p.Network.Name != "" {
		return fmt.Sprintf("type=%q name=%q", p.Network.Type, p.Network.Name)
	}
	return fmt.Sprintf("type=%q", p.Network.Type)
}

// prepare checks an ADD/CHECK/DEL request and returns CNI_ARGS. Nothing has
// run yet when it fails.
func prepare(list *cni.NetworkConfigList, rt *RuntimeConf) (string, error) {
	if rt == nil {
		return "", errNilArgs
	}
	if err := checkList(list); err != nil {
		return "", err
	}
	if err := validateAttachment(list.Name, rt); err != nil {
		return "", err
	}
	return cni.FormatArgs(rt.Args)
}

// attachArgs are the CNI_* parameters of an attachment operation.
func (c *CNI) attachArgs(command string, rt *RuntimeConf, cniArgs string) *invoke.Args {
	return &invoke.Args{
		Command:       command,
		ContainerID:   rt.ContainerID,
		NetNS:         rt.NetNS,
		IfName:        rt.IfName,
		PluginArgsStr: cniArgs,
		Path:          invoke.JoinPaths(c.paths),
	}
}

// attachConfig derives the stdin of an ADD/CHECK/DEL: runtimeConfig from
// the capabilities, and prevResult when there is one.
func attachConfig(list *cni.NetworkConfigList, p *cni.PluginConfig, rt *RuntimeConf, prev *cni.Result) ([]byte, error) {
	inject := map[string]any{}
	if rc := runtimeConfig(p, rt.CapabilityArgs); rc != nil {
		inject["runtimeConfig"] = rc
	}
	if prev != nil {
		inject["prevResult"] = prev
	}
	return BuildPluginConfig(p, list.Name, list.CNIVersion, inject)
}

// AddNetworkList runs ADD of every plugin of list in order, each getting
// the previous one's result as prevResult, and caches the final result. It
// stops at the first failure, with an error naming the plugin that keeps
// the plugin's *cni.Error reachable with errors.As; the caller must then
// DEL. Plugin lookup and the names of the attachment are checked before any
// plugin runs.
func (c *CNI) AddNetworkList(ctx context.Context, list *cni.NetworkConfigList, rt *RuntimeConf) (*cni.Result, error) {
	if err := checkList(list); err != nil {
		return nil, err
	}
	if rt == nil {
		return nil, errNilArgs
	}
	paths := make([]string, len(list.Plugins))
	for i, p := range list.Plugins {
		path, err := c.exec.FindInPath(p.Network.Type, c.paths)
		if err != nil {
			return nil, fmt.Errorf("plugin %s failed (add): %w", describe(p), err)
		}
		paths[i] = path
	}
	cniArgs, err := prepare(list, rt)
	if err != nil {
		return nil, fmt.Errorf("plugin %s failed (add): %w", describe(list.Plugins[0]), err)
	}
	locks, err := c.lockContainer(ctx, rt.ContainerID)
	if err != nil {
		return nil, err
	}
	defer locks.release()

	var res *cni.Result
	for i, p := range list.Plugins {
		conf, err := attachConfig(list, p, rt, res)
		if err != nil {
			return nil, fmt.Errorf("plugin %s failed (add): %w", describe(p), err)
		}
		slog.Debug("cni add", "network", list.Name, "plugin", p.Network.Type, "container", rt.ContainerID, "ifname", rt.IfName)
		if res, err = invoke.ExecPluginWithResult(ctx, paths[i], conf, c.attachArgs("ADD", rt, cniArgs), c.exec); err != nil {
			return nil, fmt.Errorf("plugin %s failed (add): %w", describe(p), err)
		}
	}
	if err := c.writeCache(list, rt, res); err != nil {
		return nil, fmt.Errorf("failed to set network %q cached result: %w", list.Name, err)
	}
	return res, nil
}

// CheckNetworkList runs CHECK of every plugin of list in order, each getting
// the cached ADD result as prevResult, and stops at the first failure.
// Lists below 0.4.0 cannot CHECK (an error, even with disableCheck); with
// disableCheck nothing runs.
func (c *CNI) CheckNetworkList(ctx context.Context, list *cni.NetworkConfigList, rt *RuntimeConf) error {
	if err := checkList(list); err != nil {
		return err
	}
	if !cni.VersionAtLeast(list.CNIVersion, cni.Version040) {
		return cni.NewError(cni.ErrIncompatibleCNIVersion,
			fmt.Sprintf("configuration version %q does not support the CHECK command", list.CNIVersion),
			"CHECK needs cniVersion 0.4.0 or later")
	}
	if list.DisableCheck {
		return nil
	}
	cniArgs, err := prepare(list, rt)
	if err != nil {
		return err
	}
	locks, err := c.lockContainer(ctx, rt.ContainerID)
	if err != nil {
		return err
	}
	defer locks.release()
	cached, err := c.cachedResult(list.Name, list.CNIVersion, rt)
	if err != nil {
		return err
	}
	for _, p := range list.Plugins {
		if err := c.runAttach(ctx, "CHECK", list, p, rt, cniArgs, cached); err != nil {
			return fmt.Errorf("plugin %s failed (check): %w", describe(p), err)
		}
	}
	return nil
}

// runAttach runs a result-less attachment command of one plugin.
func (c *CNI) runAttach(ctx context.Context, command string, list *cni.NetworkConfigList, p *cni.PluginConfig, rt *RuntimeConf, cniArgs string, prev *cni.Result) error {
	path, err := c.exec.FindInPath(p.Network.Type, c.paths)
	if err != nil {
		return err
	}
	conf, err := attachConfig(list, p, rt, prev)
	if err != nil {
		return err
	}
	slog.Debug("cni "+command, "network", list.Name, "plugin", p.Network.Type, "container", rt.ContainerID, "ifname", rt.IfName)
	return invoke.ExecPluginWithoutResult(ctx, path, conf, c.attachArgs(command, rt, cniArgs), c.exec)
}

// DelNetworkList runs DEL of every plugin of list in reverse order. From
// 0.4.0 on every plugin gets the cached ADD result as prevResult; an
// unreadable cache is removed first and the DEL runs without. It stops at
// the first failure (the cache is then kept, so the DEL can be retried) and
// removes the cache once every plugin succeeded. Repeated DELs succeed.
func (c *CNI) DelNetworkList(ctx context.Context, list *cni.NetworkConfigList, rt *RuntimeConf) error {
	cniArgs, err := prepare(list, rt)
	if err != nil {
		return err
	}
	locks, err := c.lockContainer(ctx, rt.ContainerID)
	if err != nil {
		return err
	}
	defer locks.release()
	return c.del(ctx, list, rt, cniArgs)
}

// del is DelNetworkList with the locks already held.
func (c *CNI) del(ctx context.Context, list *cni.NetworkConfigList, rt *RuntimeConf, cniArgs string) error {
	var cached *cni.Result
	if cni.VersionAtLeast(list.CNIVersion, cni.Version040) {
		res, err := c.cachedResult(list.Name, list.CNIVersion, rt)
		if err != nil {
			slog.Warn("cached result unusable, DEL proceeds without prevResult", "network", list.Name,
				"container", rt.ContainerID, "ifname", rt.IfName, "err", err)
			if rerr := c.removeCache(list.Name, rt); rerr != nil {
				return fmt.Errorf("removing unusable cached result: %w", rerr)
			}
		}
		cached = res
	}
	for i := len(list.Plugins) - 1; i >= 0; i-- {
		p := list.Plugins[i]
		if err := c.runAttach(ctx, "DEL", list, p, rt, cniArgs, cached); err != nil {
			return fmt.Errorf("plugin %s failed (delete): %w", describe(p), err)
		}
	}
	if err := c.removeCache(list.Name, rt); err != nil {
		return fmt.Errorf("removing cached result of network %q: %w", list.Name, err)
	}
	return nil
}

// GCNetworkList removes what attachments of list not in args hold: first a
// full DEL of every cached attachment of this network that is not valid
// (with the netns, CNI_ARGS and capability args cached by its ADD), then,
// for lists of 1.1.0 and later, GC of every plugin with
// cni.dev/valid-attachments (and the older cni.dev/attachments). It runs
// exclusively of every ADD/CHECK/DEL sharing the cache directory, continues
// past failures and returns them all joined. A nil args means no attachment
// is valid. With disableGC nothing runs.
func (c *CNI) GCNetworkList(ctx context.Context, list *cni.NetworkConfigList, args *GCArgs) error {
	if err := checkList(list); err != nil {
		return err
	}
	if list.DisableGC {
		return nil
	}
	locks, err := c.lockGC(ctx)
	if err != nil {
		return err
	}
	defer locks.release()

	var errs []error
	atts, err := c.GetCachedAttachments("")
	if err != nil {
		errs = append(errs, err)
	}
	valid := map[cni.GCAttachment]bool{}
	if args != nil {
		for _, a := range args.ValidAttachments {
			valid[a] = true
		}
	}
	for _, a := range atts {
		if a.NetworkName != list.Name || valid[cni.GCAttachment{ContainerID: a.ContainerID, IfName: a.IfName}] {
			continue
		}
		rt := &RuntimeConf{ContainerID: a.ContainerID, NetNS: a.NetNS, IfName: a.IfName, Args: a.Args, CapabilityArgs: a.CapabilityArgs}
		cniArgs, err := prepare(list, rt)
		if err == nil {
			err = c.del(ctx, list, rt, cniArgs)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("failed to delete stale attachment %s %s: %w", a.ContainerID, a.IfName, err))
		}
	}
	if cni.VersionAtLeast(list.CNIVersion, cni.Version110) {
		inject := map[string]any{}
		if args != nil {
			inject["cni.dev/valid-attachments"] = args.ValidAttachments
			inject["cni.dev/attachments"] = args.ValidAttachments
		}
		for _, p := range list.Plugins {
			if err := c.runPlain(ctx, "GC", list, p, inject); err != nil {
				errs = append(errs, fmt.Errorf("plugin %s failed (gc): %w", describe(p), err))
			}
		}
	}
	return errors.Join(errs...)
}

// runPlain runs a command without attachment (GC, STATUS) of one plugin.
func (c *CNI) runPlain(ctx context.Context, command string, list *cni.NetworkConfigList, p *cni.PluginConfig, inject map[string]any) error {
	path, err := c.exec.FindInPath(p.Network.Type, c.paths)
	if err != nil {
		return err
	}
	conf, err := BuildPluginConfig(p, list.Name, list.CNIVersion, inject)
	if err != nil {
		return err
	}
	slog.Debug("cni "+command, "network", list.Name, "plugin", p.Network.Type)
	return invoke.ExecPluginWithoutResult(ctx, path, conf, &invoke.Args{Command: command, Path: invoke.JoinPaths(c.paths)}, c.exec)
}

// GetStatusNetworkList runs STATUS of every plugin of list in order and
// returns the first failure as the plugin reported it, so its code (50, 51)
// is the error's. Lists below 1.1.0 have no STATUS and are reported ready.
func (c *CNI) GetStatusNetworkList(ctx context.Context, list *cni.NetworkConfigList) error {
	if err := checkList(list); err != nil {
		return err
	}
	if !cni.VersionAtLeast(list.CNIVersion, cni.Version110) {
		return nil
	}
	for _, p := range list.Plugins {
		if err := c.runPlain(ctx, "STATUS", list, p, nil); err != nil {
			return err
		}
	}
	return nil
}

// GetVersionInfo asks the plugin of type pluginType which spec versions it
// supports.
func (c *CNI) GetVersionInfo(ctx context.Context, pluginType string) (*cni.VersionInfo, error) {
	path, err := c.exec.FindInPath(pluginType, c.paths)
	if err != nil {
		return nil, err
	}
	return invoke.GetVersionInfo(ctx, path, c.exec)
}

// ValidateNetworkList checks that every plugin of list, and every IPAM
// plugin it names, is installed and supports the list's version, and
// returns the sorted capabilities the list's plugins enable. All problems
// are reported together.
func (c *CNI) ValidateNetworkList(ctx context.Context, list *cni.NetworkConfigList) ([]string, error) {
	if err := checkList(list); err != nil {
		return nil, err
	}
	want := list.CNIVersion
	if want == "" {
		want = cni.Version010
	}
	caps := map[string]bool{}
	var errs []error
	for _, p := range list.Plugins {
		for _, t := range []string{p.Network.Type, p.Network.IPAM.Type} {
			if t == "" {
				continue
			}
			vi, err := c.GetVersionInfo(ctx, t)
			if err != nil {
				errs = append(errs, fmt.Errorf("plugin %q: %w", t, err))
				continue
			}
			if !vi.Supports(want) {
				errs = append(errs, cni.NewError(cni.ErrIncompatibleCNIVersion,
					fmt.Sprintf("plugin %s does not support config version %q", t, want),
					fmt.Sprintf("it supports %v", vi.SupportedVersions)))
			}
		}
		for k, on := range p.Network.Capabilities {
			if on {
				caps[k] = true
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	out := make([]string, 0, len(caps))
	for k := range caps {
		out = append(out, k)
	}
	sort.Strings(out)
	return out, nil
}
