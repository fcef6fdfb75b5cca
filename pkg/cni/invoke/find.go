package invoke

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/knit-cni/knit/pkg/cni"
)

// FindInPath returns the path of the plugin binary named plugin: the first
// regular file of that name (symlinks followed) in the directories of paths,
// in order. Entries of that name that are not regular files (directories,
// sockets) are skipped. A plugin name holding a path separator, or being "."
// or "..", is refused before the file system is touched.
//
// A plugin that is not found is an error with code cni.ErrPluginNotAvailable
// (50): the network cannot be served until the binary is installed.
func FindInPath(plugin string, paths []string) (string, error) {
	if err := cni.ValidatePluginType(plugin); err != nil {
		return "", err
	}
	if len(paths) == 0 {
		return "", cni.NewError(cni.ErrPluginNotAvailable, "no paths provided",
			fmt.Sprintf("cannot look for plugin %q: set CNI_PATH (or the runtime's plugin directories) to the directories holding the plugin binaries", plugin))
	}
	for _, dir := range paths {
		if dir == "" {
			continue
		}
		full := filepath.Join(dir, plugin)
		if fi, err := os.Stat(full); err == nil && fi.Mode().IsRegular() {
			return full, nil
		}
	}
	return "", cni.NewError(cni.ErrPluginNotAvailable, fmt.Sprintf("failed to find plugin %q in path %s", plugin, paths),
		"install the plugin binary in one of these directories or add its directory to CNI_PATH")
}
