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
	"strings"

	"github.com/spf13/cobra"

	"github.com/knit-cni/knit/pkg/cni"
)

// pluginBinary is the name of the multi-call plugin binary, and the module
// package it is built from (recorded in its build info).
const (
	pluginBinary  = "knit-plugin"
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
create one symlink per plugin type (as "knit-plugin --list" names them).

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
			fmt.Fprintf(g.stdout, "%s: %s; %d plugin links (%d new): %s\n",
				filepath.Join(dir, pluginBinary), rep.binary, len(rep.types), rep.newLinks, strings.Join(rep.types, " "))
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
	binary   string // "installed", "updated" or "up to date"
	types    []string
	newLinks int
}

// install copies the plugin binary from src into dir and links every type
// it reports to it.
func install(ctx context.Context, src, dir string, force bool) (*installReport, error) {
	if !isKnitPlugin(src) {
		return nil, cni.NewError(cni.ErrInvalidEnvironmentVariables, "not a knit-plugin binary",
			fmt.Sprintf("%s has no build info for %s: give --from the knit-plugin built from this repository", src, pluginPackage))
	}
	out, err := exec.CommandContext(ctx, src, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("asking %s --list for its plugin types: %w", src, err)
	}
	types := strings.Fields(string(out))
	if len(types) == 0 {
		return nil, fmt.Errorf("%s --list named no plugin types: is it a complete build?", src)
	}
	for _, t := range types {
		if err := cni.ValidatePluginType(t); err != nil || t == pluginBinary {
			return nil, fmt.Errorf("%s --list named an unusable plugin type %q", src, t)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}

	// Check everything before changing anything.
	dst := filepath.Join(dir, pluginBinary)
	if err := checkReplaceable(dst, force); err != nil {
		return nil, err
	}
	for _, t := range types {
		if err := checkReplaceable(filepath.Join(dir, t), force); err != nil {
			return nil, err
		}
	}

	rep := &installReport{types: types}
	rep.binary, err = installBinary(src, dst)
	if err != nil {
		return nil, err
	}
	for _, t := range types {
		created, err := installLink(filepath.Join(dir, t))
		if err != nil {
			return nil, err
		}
		if created {
			rep.newLinks++
		}
	}
	slog.Info("installed knit plugins", "dir", dir, "types", types)
	return rep, nil
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
		return err == nil && filepath.Base(target) == pluginBinary
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

// installLink makes path a symlink to the plugin binary beside it, replacing
// whatever is there atomically. It reports whether it changed anything.
func installLink(path string) (bool, error) {
	if target, err := os.Readlink(path); err == nil && target == pluginBinary {
		return false, nil
	}
	tmp := filepath.Join(filepath.Dir(path), fmt.Sprintf(".%s.tmp-%d", filepath.Base(path), os.Getpid()))
	os.Remove(tmp)
	if err := os.Symlink(pluginBinary, tmp); err != nil {
		return false, fmt.Errorf("creating link %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return false, fmt.Errorf("moving link into place at %s: %w", path, err)
	}
	return true, nil
}
