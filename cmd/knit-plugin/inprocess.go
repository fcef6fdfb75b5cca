package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"runtime"
	"strings"

	"github.com/knit-cni/knit/pkg/cni/invoke"
	"github.com/knit-cni/knit/pkg/cni/skel"
	vnetns "github.com/vishvananda/netns"
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
		Has:    canRunInProcess,
		Run:    runBuiltIn,
		Stderr: os.Stderr,
	}
}

// canRunInProcess reports whether typ is registered here and its exec'd
// process would not be refused for running inside CNI_NETNS.
//
// The skel refuses a CNI_NETNS that is the plugin's own namespace, judged
// by /proc/self: the main thread. In-process that is the delegating
// plugin's main thread, which may at that moment be inside the container's
// namespace for some other goroutine, so the skel's check would refuse
// wrongly. The check is made here instead, on the calling thread, the one
// an exec'd delegate would have been forked from (an unlocked goroutine's
// thread is always in the process's own namespace; a locked one stays on
// its thread until runBuiltIn returns). A delegate that would be refused is
// exec'd, so it is refused exactly as before.
func canRunInProcess(typ string, env []string) bool {
	if _, ok := registry[typ]; !ok {
		return false
	}
	getenv, _ := invoke.EnvLookup(env)
	path := getenv("CNI_NETNS")
	if path == "" || netnsOverride(getenv) {
		return true
	}
	target, err := vnetns.GetFromPath(path)
	if err != nil {
		return true // the plugin reports an unusable path itself
	}
	defer target.Close()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cur, err := vnetns.Get()
	if err != nil {
		return false
	}
	defer cur.Close()
	return !target.Equal(cur)
}

// netnsOverride reads CNI_NETNS_OVERRIDE as the skel does.
func netnsOverride(getenv func(string) string) bool {
	v := strings.ToLower(getenv("CNI_NETNS_OVERRIDE"))
	return v == "1" || v == "true"
}

// runBuiltIn runs the registered plugin typ exactly as its own process
// would: skel.Execute with the process's environment and streams. The
// skel's CNI_NETNS check is skipped (canRunInProcess made it); the plugin's
// Request.Env is still the exact environment.
func runBuiltIn(ctx context.Context, typ string, stdin []byte, env []string, stdout, stderr io.Writer) int {
	e := registry[typ]
	lookup, environ := invoke.EnvLookup(env)
	getenv := func(k string) string {
		if k == "CNI_NETNS_OVERRIDE" {
			return "1"
		}
		return lookup(k)
	}
	return skel.Execute(ctx, e.plugin, e.info, skel.IO{
		Getenv:  getenv,
		Environ: environ,
		Stdin:   bytes.NewReader(stdin),
		Stdout:  stdout,
		Stderr:  stderr,
	})
}
