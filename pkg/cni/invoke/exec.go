package invoke

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/knit-cni/knit/pkg/cni"
)

func orDefault(e Exec) Exec {
	if e == nil {
		return &RawExec{Stderr: os.Stderr}
	}
	return e
}

// configVersion returns the cniVersion of a request configuration ("" when
// it has none).
func configVersion(netconf []byte) (string, error) {
	var c struct {
		CNIVersion string `json:"cniVersion"`
	}
	if err := json.Unmarshal(netconf, &c); err != nil {
		return "", cni.NewError(cni.ErrDecodingFailure, "cannot read cniVersion of the plugin configuration", err.Error())
	}
	return c.CNIVersion, nil
}

// ExecPluginWithResult runs an ADD-like command and decodes the plugin's
// result. A result without cniVersion is taken to be in the configuration's
// version (0.1.0 if that has none too); a literal null is an empty result.
func ExecPluginWithResult(ctx context.Context, pluginPath string, netconf []byte, args *Args, exec Exec) (*cni.Result, error) {
	exec = orDefault(exec)
	if args == nil {
		args = &Args{}
	}
	confVersion, err := configVersion(netconf)
	if err != nil {
		return nil, err
	}
	out, err := exec.ExecPlugin(ctx, pluginPath, netconf, args.AsEnv())
	if err != nil {
		return nil, err
	}
	return decodeResult(out, confVersion, pluginPath, args.Command)
}

// decodeResult decodes a plugin's result printed for command.
func decodeResult(out []byte, confVersion, pluginPath, command string) (*cni.Result, error) {
	out = bytes.TrimSpace(out)
	if len(out) == 0 {
		return nil, cni.NewError(cni.ErrDecodingFailure, fmt.Sprintf("plugin %s printed no result", filepath.Base(pluginPath)),
			"a successful "+command+" must print a result object on stdout; the plugin is broken")
	}
	if string(out) == "null" {
		out = []byte("{}")
	}
	res, err := cni.ParseResult(out, confVersion)
	if err != nil {
		return nil, cni.NewError(cni.ErrDecodingFailure, fmt.Sprintf("cannot decode the result of plugin %s", filepath.Base(pluginPath)), err.Error())
	}
	return res, nil
}

// ExecPluginWithoutResult runs a command that prints nothing on success
// (DEL, CHECK, GC, STATUS).
func ExecPluginWithoutResult(ctx context.Context, pluginPath string, netconf []byte, args *Args, exec Exec) error {
	if args == nil {
		args = &Args{}
	}
	_, err := orDefault(exec).ExecPlugin(ctx, pluginPath, netconf, args.AsEnv())
	return err
}

// GetVersionInfo asks a plugin which spec versions it supports. Plugins too
// old to know VERSION (they fail with "unknown CNI_COMMAND: VERSION") support
// 0.1.0 only.
func GetVersionInfo(ctx context.Context, pluginPath string, exec Exec) (*cni.VersionInfo, error) {
	args := &Args{
		Command: "VERSION",
		// Plugins built on very old skel versions require these.
		NetNS:  "dummy",
		IfName: "dummy",
		Path:   "dummy",
	}
	stdin := []byte(fmt.Sprintf(`{"cniVersion":%q}`, cni.CurrentVersion))
	out, err := orDefault(exec).ExecPlugin(ctx, pluginPath, stdin, args.AsEnv())
	if err != nil {
		var ce *cni.Error
		if errors.As(err, &ce) && ce.Msg == "unknown CNI_COMMAND: VERSION" {
			return &cni.VersionInfo{CNIVersion: cni.CurrentVersion, SupportedVersions: []string{cni.Version010}}, nil
		}
		return nil, err
	}
	return cni.ParseVersionInfo(out)
}
