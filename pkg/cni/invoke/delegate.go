package invoke

import (
	"context"
	"os"
	"path/filepath"

	"github.com/knit-cni/knit/pkg/cni"
)

// delegate finds the delegated plugin along this process's CNI_PATH.
func delegate(delegateType string, exec Exec) (string, Exec, error) {
	if exec == nil {
		exec = DelegateExec
	}
	exec = orDefault(exec)
	paths := filepath.SplitList(os.Getenv("CNI_PATH"))
	path, err := exec.FindInPath(delegateType, paths)
	if err != nil {
		return "", nil, err
	}
	return path, exec, nil
}

// DelegateAdd runs ADD of the plugin delegateType (typically an IPAM plugin)
// with the caller's environment and netconf, the caller's complete config.
// A nil exec means DelegateExec, or when that is nil too, running the binary
// with its stderr forwarded to ours.
func DelegateAdd(ctx context.Context, delegateType string, netconf []byte, exec Exec) (*cni.Result, error) {
	path, exec, err := delegate(delegateType, exec)
	if err != nil {
		return nil, err
	}
	return delegateResult(ctx, path, netconf, "ADD", exec)
}

// DelegateCheck runs CHECK of the delegated plugin.
func DelegateCheck(ctx context.Context, delegateType string, netconf []byte, exec Exec) error {
	return delegateNoResult(ctx, delegateType, netconf, "CHECK", exec)
}

// DelegateDel runs DEL of the delegated plugin.
func DelegateDel(ctx context.Context, delegateType string, netconf []byte, exec Exec) error {
	return delegateNoResult(ctx, delegateType, netconf, "DEL", exec)
}

// DelegateStatus runs STATUS of the delegated plugin.
func DelegateStatus(ctx context.Context, delegateType string, netconf []byte, exec Exec) error {
	return delegateNoResult(ctx, delegateType, netconf, "STATUS", exec)
}

// DelegateGC runs GC of the delegated plugin.
func DelegateGC(ctx context.Context, delegateType string, netconf []byte, exec Exec) error {
	return delegateNoResult(ctx, delegateType, netconf, "GC", exec)
}

func delegateNoResult(ctx context.Context, delegateType string, netconf []byte, command string, exec Exec) error {
	path, exec, err := delegate(delegateType, exec)
	if err != nil {
		return err
	}
	_, err = exec.ExecPlugin(ctx, path, netconf, DelegateEnv(command))
	return err
}

func delegateResult(ctx context.Context, path string, netconf []byte, command string, exec Exec) (*cni.Result, error) {
	confVersion, err := configVersion(netconf)
	if err != nil {
		return nil, err
	}
	out, err := exec.ExecPlugin(ctx, path, netconf, DelegateEnv(command))
	if err != nil {
		return nil, err
	}
	return decodeResult(out, confVersion, path, command)
}
