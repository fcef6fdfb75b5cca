package main

import (
	"bytes"
	"context"
	"io"
	"os"

	"github.com/knit-cni/knit/pkg/cni/invoke"
	"github.com/knit-cni/knit/pkg/cni/skel"
)

// inProcessEnv turns the in-process delegation off when set to "0": every
// delegated plugin is then exec'd, as by any other binary. It is read from
// the delegating plugin's environment.
const inProcessEnv = "KNIT_PLUGIN_INPROCESS"

// inProcessDelegates makes a plugin's IPAM delegate run as a function call
// when the delegate found on CNI_PATH is this very binary (a link to it
// named by a type registered here), saving an exec per ADD, DEL and CHECK.
// Delegates that are other binaries are exec'd as before.
func inProcessDelegates() {
	if os.Getenv(inProcessEnv) == "0" {
		return
	}
	invoke.DelegateExec = &invoke.InProcess{
		Has:    func(typ string) bool { _, ok := registry[typ]; return ok },
		Run:    runBuiltIn,
		Stderr: os.Stderr,
	}
}

// runBuiltIn runs the registered plugin typ exactly as its own process
// would: skel.Execute with the process's environment and streams.
func runBuiltIn(ctx context.Context, typ string, stdin []byte, env []string, stdout, stderr io.Writer) int {
	e := registry[typ]
	getenv, environ := invoke.EnvLookup(env)
	return skel.Execute(ctx, e.plugin, e.info, skel.IO{
		Getenv:  getenv,
		Environ: environ,
		Stdin:   bytes.NewReader(stdin),
		Stdout:  stdout,
		Stderr:  stderr,
	})
}
