package conformance

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/knit-cni/knit/internal/nstest"
	"github.com/knit-cni/knit/pkg/cni"
)

func loopbackList(t *testing.T, version string, extra string) *libcni.NetworkConfigList {
	t.Helper()
	plugin := `{"type":"loopback"` + extra + `}`
	list, err := libcni.ConfListFromBytes([]byte(fmt.Sprintf(
		`{"cniVersion":%q,"name":"conf-lo","plugins":[%s]}`, version, plugin)))
	must(t, "parsing the conflist with libcni", err)
	return list
}

func cacheFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "results"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// TestLibcniDrivesLoopback: libcni runs ADD, CHECK, STATUS, GC, DEL and
// VERSION against knit's loopback at every spec version.
func TestLibcniDrivesLoopback(t *testing.T) {
	nstest.RequireRoot(t)
	dir := nstest.Plugins(t)
	for _, v := range cni.AllVersions {
		t.Run(v, func(t *testing.T) {
			host, ctr := nstest.HostAndContainer(t, "cl")
			cache := t.TempDir()
			c := libcni.NewCNIConfigWithCacheDir([]string{dir}, cache, nil)
			list := loopbackList(t, v, "")
			rt := &libcni.RuntimeConf{ContainerID: "conf-ctr-1", NetNS: ctr, IfName: "eth0",
				Args: [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAME", "p"}}}

			// VERSION and validation.
			var info interface{ SupportedVersions() []string }
			must(t, "GetVersionInfo", inHost(t, host, func(ctx context.Context) error {
				var err error
				info, err = c.GetVersionInfo(ctx, "loopback")
				return err
			}))
			if !slices.Equal(info.SupportedVersions(), cni.AllVersions) {
				t.Errorf("libcni sees supported versions %v", info.SupportedVersions())
			}
			must(t, "ValidateNetworkList", inHost(t, host, func(ctx context.Context) error {
				_, err := c.ValidateNetworkList(ctx, list)
				return err
			}))

			// ADD.
			var res types.Result
			must(t, "AddNetworkList", inHost(t, host, func(ctx context.Context) error {
				var err error
				res, err = c.AddNetworkList(ctx, list, rt)
				return err
			}))
			if res.Version() != v {
				t.Errorf("libcni parsed a %s result, want %s", res.Version(), v)
			}
			cur, err := current.NewResultFromResult(res)
			must(t, "converting the result with libcni", err)
			var addrs []string
			for _, ip := range cur.IPs {
				addrs = append(addrs, ip.Address.String())
			}
			if !slices.Equal(addrs, []string{"127.0.0.1/8", "::1/128"}) {
				t.Errorf("addresses %v, want [127.0.0.1/8 ::1/128]", addrs)
			}
			if cni.VersionAtLeast(v, cni.Version030) {
				if len(cur.Interfaces) != 1 || cur.Interfaces[0].Name != "lo" || cur.Interfaces[0].Sandbox != ctr {
					t.Errorf("interfaces %v, want lo in the container", cur.Interfaces)
				}
			}
			if !nstest.LinkUp(t, ctr, "lo") {
				t.Fatal("lo is not up after ADD")
			}
			if files := cacheFiles(t, cache); !slices.Equal(files, []string{"conf-lo-conf-ctr-1-eth0"}) {
				t.Errorf("cache files %v", files)
			}
			cached, err := c.GetNetworkListCachedResult(list, rt)
			must(t, "GetNetworkListCachedResult", err)
			if cached == nil || cached.Version() != v {
				t.Errorf("cached result %v", cached)
			}

			// CHECK: only from 0.4.0; libcni refuses below without exec.
			err = inHost(t, host, func(ctx context.Context) error { return c.CheckNetworkList(ctx, list, rt) })
			if cni.VersionAtLeast(v, cni.Version040) {
				must(t, "CheckNetworkList", err)
			} else if err == nil || !strings.Contains(err.Error(), "does not support the CHECK command") {
				t.Errorf("CHECK on %s: %v, want libcni's refusal", v, err)
			}

			// STATUS: libcni answers "ready" below 1.1.0 without running anything.
			must(t, "GetStatusNetworkList", inHost(t, host, func(ctx context.Context) error {
				return c.GetStatusNetworkList(ctx, list)
			}))

			// GC keeping the attachment: nothing is deleted.
			must(t, "GCNetworkList (attachment valid)", inHost(t, host, func(ctx context.Context) error {
				return c.GCNetworkList(ctx, list, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{
					{ContainerID: rt.ContainerID, IfName: rt.IfName}}})
			}))
			if !nstest.LinkUp(t, ctr, "lo") || len(cacheFiles(t, cache)) != 1 {
				t.Fatal("GC with the attachment listed as valid removed it")
			}

			// DEL.
			must(t, "DelNetworkList", inHost(t, host, func(ctx context.Context) error { return c.DelNetworkList(ctx, list, rt) }))
			if nstest.LinkUp(t, ctr, "lo") {
				t.Error("lo is still up after DEL")
			}
			if files := cacheFiles(t, cache); len(files) != 0 {
				t.Errorf("cache files left after DEL: %v", files)
			}
			must(t, "second DelNetworkList", inHost(t, host, func(ctx context.Context) error { return c.DelNetworkList(ctx, list, rt) }))
		})
	}
}

// TestLibcniGCDeletesStale: a GC that does not list the attachment makes
// libcni DEL it through knit's plugin (at every version), then, at 1.1.0,
// run the plugin's GC.
func TestLibcniGCDeletesStale(t *testing.T) {
	nstest.RequireRoot(t)
	dir := nstest.Plugins(t)
	for _, v := range []string{"0.4.0", "1.0.0", "1.1.0"} {
		t.Run(v, func(t *testing.T) {
			host, ctr := nstest.HostAndContainer(t, "cg")
			cache := t.TempDir()
			c := libcni.NewCNIConfigWithCacheDir([]string{dir}, cache, nil)
			list := loopbackList(t, v, "")
			rt := &libcni.RuntimeConf{ContainerID: "conf-ctr-2", NetNS: ctr, IfName: "eth0"}
			must(t, "ADD", inHost(t, host, func(ctx context.Context) error {
				_, err := c.AddNetworkList(ctx, list, rt)
				return err
			}))
			must(t, "GC", inHost(t, host, func(ctx context.Context) error {
				return c.GCNetworkList(ctx, list, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{
					{ContainerID: "someone-else", IfName: "eth0"}}})
			}))
			if nstest.LinkUp(t, ctr, "lo") {
				t.Error("stale attachment's lo still up after GC")
			}
			if files := cacheFiles(t, cache); len(files) != 0 {
				t.Errorf("stale cache entry survived GC: %v", files)
			}
		})
	}
}

// TestLibcniVersionGates shows libcni only runs STATUS and GC from 1.1.0:
// the plugin config carries a prevResult knit's skel rejects (wrong result
// family), so the call fails exactly when libcni runs the plugin.
func TestLibcniVersionGates(t *testing.T) {
	nstest.RequireRoot(t)
	dir := nstest.Plugins(t)
	host := nstest.New(t, "cvg")
	poison := `,"prevResult":{"cniVersion":"0.2.0","ip4":{"ip":"10.0.0.2/24"}}`
	for _, v := range cni.AllVersions {
		c := libcni.NewCNIConfigWithCacheDir([]string{dir}, t.TempDir(), nil)
		list := loopbackList(t, v, poison)
		statusErr := inHost(t, host, func(ctx context.Context) error { return c.GetStatusNetworkList(ctx, list) })
		gcErr := inHost(t, host, func(ctx context.Context) error { return c.GCNetworkList(ctx, list, &libcni.GCArgs{}) })
		if v == cni.Version110 {
			for name, err := range map[string]error{"STATUS": statusErr, "GC": gcErr} {
				if err == nil || !strings.Contains(err.Error(), "prevResult version does not match") {
					t.Errorf("%s %s: %v, want the plugin's code-1 prevResult error", name, v, err)
				}
			}
			continue
		}
		if statusErr != nil || gcErr != nil {
			t.Errorf("%s: libcni ran STATUS/GC below 1.1.0: status %v, gc %v", v, statusErr, gcErr)
		}
	}
}
