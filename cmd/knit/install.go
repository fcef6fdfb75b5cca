package main

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/knit-cni/knit/pkg/cni"
)

// pluginBinary is the name of the multi-call plugin binary, extraBinary
// that of the second build with the less common plugins (see
// cmd/knit-plugin), and pluginPackage the module package both are built
// from (recorded in their build info).
const (
	pluginBinary  = "knit-plugin"
	extraBinary   = "knit-plugin-extra"
	pluginPackage = "github.com/knit-cni/knit/cmd/knit-plugin"
)

func newInstallCmd(g *globals) *cobra.Command {
	var dir, from string
	var force bool
	cmd := &cobra.Command{
		Use:   "install [--dir DIR] [--from PATH] [--force]",
		Short: "Install the knit plugins into a CNI bin directory",
		Long: `Install the knit plugins for any runtime to use: copy the knit-plugin binary
(found beside the knit executable, or given by --from) into DIR atomically, and
create one symlink per plugin type (as "knit-plugin --list" names them). A
knit-plugin-extra beside it (the second binary "make build" makes, with the less
common plugins) is installed too, and its types not in knit-plugin link to it.

Running it again is harmless: an identical binary is left alone and correct
links are kept. A file of the same name that is not part of knit (for
example a reference plugin) is not overwritten unless --force is given.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from == "" {
				p, err := besideExecutable(pluginBinary)
				if err != nil {
					return err
				}
				from = p
			}
			ctx, cancel := g.context(cmd.Context())
			defer cancel()
			rep, err := install(ctx, from, dir, force)
			if err != nil {
				return err
			}
			var bins []string
			for _, b := range rep.binaries {
				bins = append(bins, filepath.Join(dir, b.name)+": "+b.state)
			}
			fmt.Fprintf(g.stdout, "%s; %d plugin links (%d new): %s\n",
				strings.Join(bins, "; "), len(rep.types), rep.newLinks, strings.Join(rep.types, " "))
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", defaultCNIPath, "directory to install into (a CNI_PATH entry)")
	cmd.Flags().StringVar(&from, "from", "", "the knit-plugin binary to install (default: beside the knit executable)")
	cmd.Flags().BoolVar(&force, "force", false, "replace files of the same names even if they are not knit's")
	return cmd
}

// besideExecutable returns the path of name in the knit executable's directory.
func besideExecutable(name string) (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("finding the knit executable: %w (give --from PATH)", err)
	}
	if r, err := filepath.EvalSymlinks(exe); err == nil {
		exe = r
	}
	p := filepath.Join(filepath.Dir(exe), name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("no %s beside %s: build it (make build) or give --from PATH", name, exe)
	}
	return p, nil
}

type installReport struct {
	binaries []binaryState
	types    []string // every type linked, sorted
	newLinks int
}

type binaryState struct {
	name  string // pluginBinary or extraBinary
	state string // "installed", "updated" or "up to date"
}

// pluginBuild is one binary to install and the types it serves.
type pluginBuild struct {
	src, name string
	types     []string
}

// install copies the plugin binary from src, and the knit-plugin-extra
// beside it if there is one, into dir and links every type they report
// to the first of them that has it. A knit-plugin-extra of an earlier
// install that no type links to any more is removed.
func install(ctx context.Context, src, dir string, force bool) (*installReport, error) {
	builds := []pluginBuild{{src: src, name: pluginBinary}}
	if extra := filepath.Join(filepath.Dir(src), extraBinary); extra != src {
		if fi, err := os.Stat(extra); err == nil && fi.Mode().IsRegular() {
			builds = append(builds, pluginBuild{src: extra, name: extraBinary})
		}
	}
	target := map[string]string{} // type -> binary name
	var types []string
	for i := range builds {
		b := &builds[i]
		if err := listBuild(ctx, b); err != nil {
			return nil, err
		}
		for _, t := range b.types {
			if _, dup := target[t]; !dup {
				target[t] = b.name
				types = append(types, t)
			}
		}
	}
	sort.Strings(types)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}

	// Check everything before changing anything.
	for _, b := range builds {
		if err := checkReplaceable(filepath.Join(dir, b.name), force); err != nil {
			return nil, err
		}
	}
	for _, t := range types {
		if err := checkReplaceable(filepath.Join(dir, t), force); err != nil {
			return nil, err
		}
	}

	rep := &installReport{types: types}
	for _, b := range builds {
		state, err := installBinary(b.src, filepath.Join(dir, b.name))
		if err != nil {
			return nil, err
		}
		rep.binaries = append(rep.binaries, binaryState{b.name, state})
	}
	for _, t := range types {
		created, err := installLink(filepath.Join(dir, t), target[t])
		if err != nil {
			return nil, err
		}
		if created {
			rep.newLinks++
		}
	}
	if len(builds) == 1 {
		removeStaleExtra(dir)
	}
	slog.Info("installed knit plugins", "dir", dir, "types", types)
	return rep, nil
}

// listBuild checks that b.src is a knit-plugin build and asks it for its
// plugin types.
func listBuild(ctx context.Context, b *pluginBuild) error {
	if !isKnitPlugin(b.src) {
		return cni.NewError(cni.ErrInvalidEnvironmentVariables, "not a knit-plugin binary",
			fmt.Sprintf("%s has no build info for %s: give --from the knit-plugin built from this repository", b.src, pluginPackage))
	}
	out, err := exec.CommandContext(ctx, b.src, "--list").Output()
	if err != nil {
		return fmt.Errorf("asking %s --list for its plugin types: %w", b.src, err)
	}
	b.types = strings.Fields(string(out))
	if len(b.types) == 0 {
		return fmt.Errorf("%s --list named no plugin types: is it a complete build?", b.src)
	}
	for _, t := range b.types {
		if err := cni.ValidatePluginType(t); err != nil || t == pluginBinary || t == extraBinary {
			return fmt.Errorf("%s --list named an unusable plugin type %q", b.src, t)
		}
	}
	return nil
}

// removeStaleExtra removes dir's knit-plugin-extra, left by an install of
// both binaries, once an install of one binary has linked every type away
// from it. Anything else of that name is left alone.
func removeStaleExtra(dir string) {
	p := filepath.Join(dir, extraBinary)
	if fi, err := os.Lstat(p); err == nil && fi.Mode().IsRegular() && isKnitPlugin(p) {
		if err := os.Remove(p); err != nil {
			slog.Warn("cannot remove the knit-plugin-extra no plugin links to any more", "path", p, "error", err)
		}
	}
}

// checkReplaceable returns nil if path is absent, knit's own (the plugin
// binary, or a link to it), or force allows replacing it.
func checkReplaceable(path string, force bool) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("checking %s: %w", path, err)
	}
	if fi.IsDir() {
		return fmt.Errorf("%s is a directory: remove or rename it, then install again", path)
	}
	if isKnitFile(path, fi) || force {
		return nil
	}
	return fmt.Errorf("%s exists and is not part of knit (another plugin?): remove it, install into another --dir, or give --force to replace it", path)
}

// isKnitFile says whether an existing file belongs to a knit install.
func isKnitFile(path string, fi fs.FileInfo) bool {
	if fi.Mode()&fs.ModeSymlink != 0 {
		target, err := os.Readlink(path)
		return err == nil && (filepath.Base(target) == pluginBinary || filepath.Base(target) == extraBinary)
	}
	return fi.Mode().IsRegular() && isKnitPlugin(path)
}

// isKnitPlugin reads the Go build info of a binary, without running it, and
// says whether it was built from knit's plugin package.
func isKnitPlugin(path string) bool {
	bi, err := buildinfo.ReadFile(path)
	return err == nil && bi.Path == pluginPackage
}

// installBinary copies src to dst through a temporary file in dst's
// directory and a rename, so a runtime never executes a half-written file.
func installBinary(src, dst string) (string, error) {
	data, err := os.ReadFile(src)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", src, err)
	}
	state := "installed"
	if fi, err := os.Lstat(dst); err == nil {
		if fi.Mode().IsRegular() && fi.Mode().Perm() == 0o755 {
			if old, err := os.ReadFile(dst); err == nil && bytes.Equal(old, data) {
				return "up to date", nil
			}
		}
		state = "updated"
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+pluginBinary+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("creating a temporary file beside %s: %w", dst, err)
	}
	defer os.Remove(tmp.Name()) // no-op once renamed
	if _, err := io.Copy(tmp, bytes.NewReader(data)); err != nil {
		tmp.Close()
		return "", fmt.Errorf("writing %s: %w", tmp.Name(), err)
	}
	if err := tmp.Chmod(0o755); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return "", fmt.Errorf("syncing %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return "", fmt.Errorf("moving the new binary into place at %s: %w", dst, err)
	}
	return state, nil
}

// installLink makes path a symlink to the plugin binary bin beside it,
// replacing whatever is there atomically. It reports whether it changed
// anything.
func installLink(path, bin string) (bool, error) {
	if target, err := os.Readlink(path); err == nil && target == bin {
		return false, nil
	}
	tmp := filepath.Join(filepath.Dir(path), fmt.Sprintf(".%s.tmp-%d", filepath.Base(path), os.Getpid()))
	os.Remove(tmp)
	if err := os.Symlink(bin, tmp); err != nil {
		return false, fmt.Errorf("creating link %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return false, fmt.Errorf("moving link into place at %s: %w", path, err)
	}
	return true, nil
}
