// Package conformance checks knit against the reference CNI implementation
// in both directions: the reference runtime library (libcni, invoke) drives
// knit's plugin binaries, and knit's runtime drives the reference plugins
// Debian ships in /usr/lib/cni, with results compared to what libcni gets.
//
// Every test makes its own "host" and "container" namespaces; plugins run
// inside the host namespace, never in the machine's root namespace.
package conformance

import (
	"context"
	"testing"
	"time"

	"github.com/knit-cni/knit/internal/netns"
	"github.com/knit-cni/knit/internal/nstest"
)

func TestMain(m *testing.M) { nstest.Main(m) }

// refPlugins is where Debian's containernetworking-plugins live.
const refPlugins = "/usr/lib/cni"

// inHost runs fn with the calling thread in the host namespace, so every
// plugin a runtime library executes from fn starts there.
func inHost(t *testing.T, host string, fn func(ctx context.Context) error) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return netns.Do(host, func() error { return fn(ctx) })
}

// must fails the test when err is not nil.
func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}
