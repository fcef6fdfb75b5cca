// Package kfeature tells tests whether the running kernel has a networking
// feature (a link kind such as ipvlan or vrf, bridge VLAN filtering, tun/tap)
// so they can skip with a message naming what is missing instead of failing
// on a kernel built without it.
//
// A feature is probed by creating the link in a throwaway network namespace
// that exists only for the probe (the machine's own namespace is never
// touched) and the answer is cached for the life of the process.
//
// Inside the kernel test harness (`make test-kernels`, which sets
// KNIT_IN_KERNEL_VM=1) the kernels are known to have every feature, so a
// missing one fails the test instead of skipping it: a harness run can never
// pass by skipping.
package kfeature

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"testing"

	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// InVMEnv is the environment variable the kernel harness sets in its guest;
// when it is "1", Require fails instead of skipping.
const InVMEnv = "KNIT_IN_KERNEL_VM"

// Feature is a kernel networking feature a test can require.
type Feature int

// The features Require and Check know how to probe.
const (
	Dummy Feature = iota
	Veth
	Bridge
	BridgeVlanFiltering
	IPVlan
	Macvlan
	Vlan
	VRF
	Bonding
	Geneve
	Vxlan
	WireGuard
	Tun
	IFB
	numFeatures
)

type info struct {
	name, config string
	probe        func() error
}

var features = [numFeatures]info{
	Dummy:               {"dummy", "CONFIG_DUMMY", probeDummy},
	Veth:                {"veth", "CONFIG_VETH", probeVeth},
	Bridge:              {"bridge", "CONFIG_BRIDGE", probeBridge},
	BridgeVlanFiltering: {"bridge vlan filtering", "CONFIG_BRIDGE_VLAN_FILTERING", probeBridgeVlanFiltering},
	IPVlan:              {"ipvlan", "CONFIG_IPVLAN", probeIPVlan},
	Macvlan:             {"macvlan", "CONFIG_MACVLAN", probeMacvlan},
	Vlan:                {"802.1q vlan", "CONFIG_VLAN_8021Q", probeVlan},
	VRF:                 {"vrf", "CONFIG_NET_VRF", probeVRF},
	Bonding:             {"bonding", "CONFIG_BONDING", probeBonding},
	Geneve:              {"geneve", "CONFIG_GENEVE", probeGeneve},
	Vxlan:               {"vxlan", "CONFIG_VXLAN", probeVxlan},
	WireGuard:           {"wireguard", "CONFIG_WIREGUARD", probeWireGuard},
	Tun:                 {"tun/tap", "CONFIG_TUN", probeTun},
	IFB:                 {"ifb", "CONFIG_IFB", probeIFB},
}

// String returns the feature's name, e.g. "ipvlan".
func (f Feature) String() string {
	if f < 0 || f >= numFeatures {
		return fmt.Sprintf("kfeature.Feature(%d)", int(f))
	}
	return features[f].name
}

// Config returns the kernel config option that provides the feature, e.g.
// "CONFIG_IPVLAN".
func (f Feature) Config() string {
	if f < 0 || f >= numFeatures {
		return ""
	}
	return features[f].config
}

// All returns every feature the package can probe.
func All() []Feature {
	out := make([]Feature, numFeatures)
	for i := range out {
		out[i] = Feature(i)
	}
	return out
}

// MissingError says the kernel lacks a feature; Err is what the probe saw.
type MissingError struct {
	Feature Feature
	Err     error
}

func (e *MissingError) Error() string {
	return fmt.Sprintf("kernel lacks %s (%s): run `make test-kernels` to test it under a Debian kernel (probe: %v)",
		e.Feature, e.Feature.Config(), e.Err)
}

func (e *MissingError) Unwrap() error { return e.Err }

// ErrNotRoot is returned by Check when the process cannot create network
// namespaces, so nothing can be probed.
var ErrNotRoot = errors.New("kfeature: needs root to probe kernel features (creates a network namespace)")

var (
	mu    sync.Mutex
	cache = map[Feature]error{}
)

// Check reports whether the kernel has f: nil if it does, a *MissingError
// if it does not, or another error if the probe itself could not run (not
// root, no namespaces). The result is cached per process.
func Check(f Feature) error {
	if f < 0 || f >= numFeatures {
		return fmt.Errorf("kfeature: unknown feature %d", int(f))
	}
	if os.Geteuid() != 0 {
		return ErrNotRoot
	}
	mu.Lock()
	defer mu.Unlock()
	if err, ok := cache[f]; ok {
		return err
	}
	err := inThrowawayNS(features[f].probe)
	var setup *setupError
	if err != nil && !errors.As(err, &setup) {
		err = &MissingError{Feature: f, Err: err}
	}
	cache[f] = err
	return err
}

// Require skips the test unless the kernel has every feature in fs, with a
// message naming the first missing one. With KNIT_IN_KERNEL_VM=1 (inside the
// kernel harness) a missing feature fails the test instead.
func Require(t testing.TB, fs ...Feature) {
	t.Helper()
	for _, f := range fs {
		err := Check(f)
		if err == nil {
			continue
		}
		var missing *MissingError
		switch {
		case os.Getenv(InVMEnv) == "1":
			t.Fatalf("%v (this kernel VM must have it: add the module to the harness's module list)", err)
		case errors.As(err, &missing):
			t.Skip(err)
		default:
			t.Skipf("cannot probe kernel feature %s: %v", f, err)
		}
	}
}

// setupError marks failures of the probe machinery (as opposed to the
// kernel refusing the feature).
type setupError struct{ err error }

func (e *setupError) Error() string { return e.err.Error() }
func (e *setupError) Unwrap() error { return e.err }

// inThrowawayNS runs probe on a locked thread moved into a new, unnamed
// network namespace. The namespace disappears when the thread returns to
// its original namespace, taking whatever the probe created with it.
func inThrowawayNS(probe func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := vnetns.Get()
		if err != nil {
			errc <- &setupError{fmt.Errorf("kfeature: getting the current network namespace: %w", err)}
			return // the thread stays locked and dies with the goroutine
		}
		defer orig.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- &setupError{fmt.Errorf("kfeature: creating a probe network namespace: %w", err)}
			return
		}
		perr := probe()
		if err := vnetns.Set(orig); err != nil {
			// The thread stays locked, so the runtime discards it.
			errc <- &setupError{fmt.Errorf("kfeature: returning to the original network namespace: %w", err)}
			return
		}
		runtime.UnlockOSThread()
		errc <- perr
	}()
	return <-errc
}
