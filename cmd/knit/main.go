// Command knit is a CNI runtime for people: it attaches network namespaces to
// CNI networks (add, check, del, gc, status, version, ls), runs a command in a
// namespace attached to networks (run), manages named namespaces like
// `ip netns` (netns) and installs the knit plugins for any runtime (install).
//
// Network configurations, the CNI path and the result cache are the ones
// every CNI runtime uses (/etc/cni/net.d, /opt/cni/bin, /var/lib/cni), so knit
// works alongside containerd, Podman and cnitool.
package main

import (
	"context"
	"os"
)

func main() {
	g := &globals{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}
	os.Exit(execute(context.Background(), g, os.Args[1:]))
}
