// Package e2e holds knit's end-to-end tests: real runtimes — Podman 4.3
// with its CNI backend, containerd 1.6 through `ctr run --cni`, and the
// reference cnitool — running containers on the knit plugins as
// `knit install` lays them out.
//
// The tests install packages and start real daemons, so they only run when
// KNIT_E2E=1 (`make e2e` sets it and installs what they need); a plain
// `go test ./...` skips them.
//
// Everything runs in a sandbox: the test binary re-executes itself under
// `unshare --mount --net --pid` with catatonit as the namespace's init. The
// sandbox's network namespace is the "host" every runtime and plugin sees,
// and tmpfs or overlay mounts private to it cover /run, /etc/cni/net.d,
// /opt (for /opt/cni/bin), /var/lib/cni and the runtimes' state, so nothing
// the runtimes write reaches the machine — even if the run is killed,
// because the kernel ends the whole process namespace and its mounts with
// it. Before and after, the outer process compares a snapshot of the root
// network namespace and those directories and fails if anything changed.
package e2e
