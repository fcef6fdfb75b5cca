package conformance

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/knit-cni/knit/internal/nstest"
	"github.com/knit-cni/knit/pkg/cni"
)

// requireKnitPlugin skips unless the built plugin directory has typ.
func requireKnitPlugin(t *testing.T, dir, typ string) {
	t.Helper()
	if _, err := os.Lstat(filepath.Join(dir, typ)); err != nil {
		t.Skipf("knit has no %s plugin yet", typ)
	}
}

func hostLocalJSON(version, dataDir string) string {
	return fmt.Sprintf(`{"cniVersion":%q,"name":"conf-hl","type":"host-local",`+
		`"ipam":{"type":"host-local","ranges":[[{"subnet":"10.79.0.0/24"}],[{"subnet":"fd79::/64"}]],`+
		`"routes":[{"dst":"0.0.0.0/0"}],"dataDir":%q}}`, version, dataDir)
}

func hostLocalPlugin(t *testing.T, version, dataDir string) *libcni.PluginConfig {
	t.Helper()
	pc, err := libcni.NetworkPluginConfFromBytes([]byte(hostLocalJSON(version, dataDir)))
	must(t, "libcni parsing the host-local config", err)
	return pc
}

// reservations returns the reservation files of conf-hl in dataDir with
// their contents (the reference layout: one file per address, named by it).
func reservations(t *testing.T, dataDir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	ents, err := os.ReadDir(filepath.Join(dataDir, "conf-hl"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for _, e := range ents {
		name := e.Name()
		if name == "lock" || len(name) > 16 && name[:16] == "last_reserved_ip" {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dataDir, "conf-hl", name))
		must(t, "reading reservation", err)
		out[name] = string(data)
	}
	return out
}

// TestLibcniDrivesHostLocal: libcni runs knit's host-local standalone
// (AddNetwork with a single-plugin config) at every version and gets the
// addresses and data files Debian's host-local gives for the same config.
func TestLibcniDrivesHostLocal(t *testing.T) {
	nstest.RequireRoot(t)
	dir := nstest.Plugins(t)
	requireKnitPlugin(t, dir, "host-local")
	_, refMissing := os.Stat(filepath.Join(refPlugins, "host-local"))
	for _, v := range cni.AllVersions {
		t.Run(v, func(t *testing.T) {
			host := nstest.New(t, "chl")
			data := t.TempDir()
			c := libcni.NewCNIConfigWithCacheDir([]string{dir}, t.TempDir(), nil)
			pc := hostLocalPlugin(t, v, data)
			rt := &libcni.RuntimeConf{ContainerID: "hl-ctr-1", NetNS: "/var/run/netns/hl-unused", IfName: "eth0"}

			var res types.Result
			must(t, "AddNetwork", inHost(t, host, func(ctx context.Context) error {
				var err error
				res, err = c.AddNetwork(ctx, pc, rt)
				return err
			}))
			if res.Version() != v {
				t.Errorf("result version %s, want %s", res.Version(), v)
			}
			got := fromLibcni(t, res)
			var addrs []string
			for _, ip := range got.IPs {
				addrs = append(addrs, ip.Address.String())
			}
			if !slices.Equal(addrs, []string{"10.79.0.2/24", "fd79::2/64"}) {
				t.Errorf("allocated %v, want [10.79.0.2/24 fd79::2/64]", addrs)
			}
			files := reservations(t, data)
			if len(files) != 2 || files["10.79.0.2"] == "" || files["fd79::2"] == "" {
				t.Errorf("reservation files %v", files)
			}

			// The reference, same config, its own data directory.
			if refMissing == nil && cni.VersionAtLeast(cni.Version100, v) {
				refData := t.TempDir()
				rc := libcni.NewCNIConfigWithCacheDir([]string{refPlugins}, t.TempDir(), nil)
				var rres types.Result
				must(t, "reference AddNetwork", inHost(t, host, func(ctx context.Context) error {
					var err error
					rres, err = rc.AddNetwork(ctx, hostLocalPlugin(t, v, refData), rt)
					return err
				}))
				if k, r := encode(t, got, v), encode(t, fromLibcni(t, rres), v); k != r {
					t.Errorf("results differ\nknit      %s\nreference %s", k, r)
				}
				if rf := reservations(t, refData); fmt.Sprint(rf) != fmt.Sprint(files) {
					t.Errorf("data files differ\nknit      %q\nreference %q", files, rf)
				}
			}

			if cni.VersionAtLeast(v, cni.Version040) {
				must(t, "CheckNetwork", inHost(t, host, func(ctx context.Context) error { return c.CheckNetwork(ctx, pc, rt) }))
			}
			must(t, "DelNetwork", inHost(t, host, func(ctx context.Context) error { return c.DelNetwork(ctx, pc, rt) }))
			if files := reservations(t, data); len(files) != 0 {
				t.Errorf("reservations left after DEL: %v", files)
			}
			must(t, "second DelNetwork", inHost(t, host, func(ctx context.Context) error { return c.DelNetwork(ctx, pc, rt) }))
			if cni.VersionAtLeast(v, cni.Version040) {
				if err := inHost(t, host, func(ctx context.Context) error { return c.CheckNetwork(ctx, pc, rt) }); err == nil {
					t.Error("CHECK of a released attachment succeeded")
				}
			}
		})
	}
}

// TestLibcniHostLocalGCAndStatus: at 1.1.0 libcni's GC reaches knit's
// host-local with cni.dev/valid-attachments, which keeps the listed
// attachment's addresses and releases the others'; STATUS reports ready.
func TestLibcniHostLocalGCAndStatus(t *testing.T) {
	nstest.RequireRoot(t)
	dir := nstest.Plugins(t)
	requireKnitPlugin(t, dir, "host-local")
	host := nstest.New(t, "chg")
	data := t.TempDir()
	c := libcni.NewCNIConfigWithCacheDir([]string{dir}, t.TempDir(), nil)
	pc := hostLocalPlugin(t, cni.Version110, data)
	for _, id := range []string{"hl-keep", "hl-stale"} {
		rt := &libcni.RuntimeConf{ContainerID: id, NetNS: "/var/run/netns/hl-unused", IfName: "eth0"}
		must(t, "AddNetwork "+id, inHost(t, host, func(ctx context.Context) error {
			_, err := c.AddNetwork(ctx, pc, rt)
			return err
		}))
	}
	if n := len(reservations(t, data)); n != 4 {
		t.Fatalf("%d reservations after two ADDs, want 4", n)
	}
	list, err := libcni.NetworkConfFromBytes([]byte(`{"cniVersion":"1.1.0","name":"conf-hl","plugins":[` +
		hostLocalJSON(cni.Version110, data) + `]}`))
	must(t, "libcni parsing the host-local conflist", err)
	must(t, "GetStatusNetworkList", inHost(t, host, func(ctx context.Context) error { return c.GetStatusNetworkList(ctx, list) }))

	// A runtime with an empty cache: libcni does no stale DELs, so only the
	// plugin's own GC can release hl-stale.
	gc := libcni.NewCNIConfigWithCacheDir([]string{dir}, t.TempDir(), nil)
	must(t, "GCNetworkList", inHost(t, host, func(ctx context.Context) error {
		return gc.GCNetworkList(ctx, list, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{
			{ContainerID: "hl-keep", IfName: "eth0"}}})
	}))
	left := reservations(t, data)
	if len(left) != 2 {
		t.Fatalf("reservations after GC: %q, want hl-keep's two", left)
	}
	for addr, owner := range left {
		if !slices.Contains([]string{"10.79.0.2", "fd79::2"}, addr) || len(owner) < 7 || owner[:7] != "hl-keep" {
			t.Errorf("reservation %s owned by %q survived GC", addr, owner)
		}
	}
}
