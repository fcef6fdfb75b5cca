package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// cnitoolPkg is the reference runtime some plugin tests drive knit with.
const cnitoolPkg = "github.com/containernetworking/cni/cnitool"

// goShim stands in for the go command in the guest, which has no Go
// toolchain. Plugin tests build the reference cnitool with
// `go build -o FILE github.com/containernetworking/cni/cnitool`; the shim
// serves exactly that from the copy the harness built on the host from the
// same module version, and refuses everything else loudly.
const goShim = `#!/bin/sh
if [ $# = 4 ] && [ "$1" = build ] && [ "$2" = -o ] && [ "$4" = ` + cnitoolPkg + ` ]; then
	exec cp /knit/bin/cnitool "$3"
fi
echo "go: there is no Go toolchain in the kernel test VM; only 'go build -o FILE ` + cnitoolPkg + `' is served (prebuilt by test/kernel)" >&2
exit 127
`

// buildHelpers builds the binaries tests exec besides the plugins, static
// so they run in the guest's libc-less userland.
func buildHelpers(ctx context.Context, root, dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(dir, "cnitool"), cnitoolPkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building %s for the guest: %v\n%s", cnitoolPkg, err, b)
	}
	if err := os.WriteFile(filepath.Join(dir, "go"), []byte(goShim), 0o755); err != nil {
		return "", err
	}
	return dir, nil
}
