package invoke

import (
	"os"
	"path/filepath"
	"strings"
)

// Args are the CNI_* parameters of one plugin invocation.
type Args struct {
	Command     string
	ContainerID string
	NetNS       string
	IfName      string
	// PluginArgsStr is CNI_ARGS verbatim; when empty, PluginArgs are joined
	// as K=V;K2=V2 instead.
	PluginArgsStr string
	PluginArgs    [][2]string
	// Path is CNI_PATH, already joined with the OS list separator.
	Path string
}

// cniVars are the variables the runtime always sets, so they never leak in
// from the runtime's own environment.
var cniVars = []string{"CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_ARGS", "CNI_IFNAME", "CNI_PATH"}

// pluginArgs returns the CNI_ARGS value.
func (a *Args) pluginArgs() string {
	if a.PluginArgsStr != "" {
		return a.PluginArgsStr
	}
	parts := make([]string, 0, len(a.PluginArgs))
	for _, p := range a.PluginArgs {
		parts = append(parts, p[0]+"="+p[1])
	}
	return strings.Join(parts, ";")
}

// AsEnv returns the plugin's environment: this process's environment with
// all six CNI_* variables set (possibly to ""), the CNI values replacing any
// inherited ones.
func (a *Args) AsEnv() []string {
	return mergeEnv(os.Environ(), map[string]string{
		"CNI_COMMAND":     a.Command,
		"CNI_CONTAINERID": a.ContainerID,
		"CNI_NETNS":       a.NetNS,
		"CNI_ARGS":        a.pluginArgs(),
		"CNI_IFNAME":      a.IfName,
		"CNI_PATH":        a.Path,
	}, cniVars)
}

// JoinPaths joins directories into a CNI_PATH value.
func JoinPaths(paths []string) string {
	return strings.Join(paths, string(filepath.ListSeparator))
}

// DelegateEnv is the environment a plugin gives a delegated plugin: its own
// environment unchanged except CNI_COMMAND.
func DelegateEnv(command string) []string {
	return mergeEnv(os.Environ(), map[string]string{"CNI_COMMAND": command}, []string{"CNI_COMMAND"})
}

// mergeEnv drops every entry of base whose key is set (or duplicated) and
// appends set in the order of keys, so the set values are the only ones.
func mergeEnv(base []string, set map[string]string, keys []string) []string {
	out := make([]string, 0, len(base)+len(keys))
	seen := make(map[string]int, len(base))
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := set[k]; ok {
			continue
		}
		if i, dup := seen[k]; dup {
			out[i] = kv // later entries win, as for exec itself
			continue
		}
		seen[k] = len(out)
		out = append(out, kv)
	}
	for _, k := range keys {
		out = append(out, k+"="+set[k])
	}
	return out
}
