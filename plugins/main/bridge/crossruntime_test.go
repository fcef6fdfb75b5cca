package bridge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/knit-cni/knit/internal/plugintest"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/knit-cni/knit/internal/netns"
	"github.com/knit-cni/knit/internal/nstest"
	"github.com/knit-cni/knit/pkg/cni"
	"github.com/knit-cni/knit/pkg/cni/runtime"
)

const refPluginDir = "/usr/lib/cni"

// shape describes a result without the parts that differ between runs
// (random veth names, MACs, allocated addresses).
func shape(r *cni.Result) string {
	var b strings.Builder
	for _, i := range r.Interfaces {
		name := i.Name
		if strings.HasPrefix(name, "veth") {
			name = "veth*"
		}
		fmt.Fprintf(&b, "if[%s mac=%v sandbox=%v] ", name, i.Mac != "", i.Sandbox != "")
	}
	for _, ip := range r.IPs {
		ones, _ := ip.Address.Mask.Size()
		idx := -1
		if ip.Interface != nil {
			idx = *ip.Interface
		}
		fmt.Fprintf(&b, "ip[v%s /%d if=%d gw=%v] ", ip.Family(), ones, idx, ip.Gateway)
	}
	var routes []string
	for _, rt := range r.Routes {
		routes = append(routes, fmt.Sprintf("route[%s gw=%v]", rt.Dst.String(), rt.GW))
	}
	sort.Strings(routes)
	fmt.Fprintf(&b, "%s dns=%v", strings.Join(routes, " "), r.DNS.Nameservers)
	return b.String()
}

type driver func(t *testing.T, l *plugintest.Lab, pluginDir, nsPath string, list []byte) *cni.Result

// viaLibcni runs ADD, CHECK and DEL through the reference runtime library.
func viaLibcni(t *testing.T, l *plugintest.Lab, pluginDir, nsPath string, list []byte) *cni.Result {
	t.Helper()
	conf, err := libcni.ConfListFromBytes(list)
	if err != nil {
		t.Fatal(err)
	}
	c := libcni.NewCNIConfigWithCacheDir([]string{pluginDir}, t.TempDir(), nil)
	rt := &libcni.RuntimeConf{ContainerID: "xrt", NetNS: nsPath, IfName: "eth0"}
	var out []byte
	err = netns.Do(l.Host, func() error {
		res, err := c.AddNetworkList(context.Background(), conf, rt)
		if err != nil {
			return fmt.Errorf("libcni ADD: %w", err)
		}
		if out, err = json.Marshal(res); err != nil {
			return err
		}
		if err := c.CheckNetworkList(context.Background(), conf, rt); err != nil {
			return fmt.Errorf("libcni CHECK: %w", err)
		}
		if err := c.DelNetworkList(context.Background(), conf, rt); err != nil {
			return fmt.Errorf("libcni DEL: %w", err)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s (plugins from %s)", err, pluginDir)
	}
	res, err := cni.ParseResult(out, "")
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// viaKnitRuntime runs ADD, CHECK and DEL through knit's runtime.
func viaKnitRuntime(t *testing.T, l *plugintest.Lab, pluginDir, nsPath string, list []byte) *cni.Result {
	t.Helper()
	conf, err := cni.ParseConfigList(list)
	if err != nil {
		t.Fatal(err)
	}
	c := runtime.New(runtime.Config{Paths: []string{pluginDir}, CacheDir: t.TempDir()})
	rt := &runtime.RuntimeConf{ContainerID: "xrt", NetNS: nsPath, IfName: "eth0"}
	var res *cni.Result
	err = netns.Do(l.Host, func() error {
		var err error
		if res, err = c.AddNetworkList(context.Background(), conf, rt); err != nil {
			return fmt.Errorf("knit runtime ADD: %w", err)
		}
		if err := c.CheckNetworkList(context.Background(), conf, rt); err != nil {
			return fmt.Errorf("knit runtime CHECK: %w", err)
		}
		if err := c.DelNetworkList(context.Background(), conf, rt); err != nil {
			return fmt.Errorf("knit runtime DEL: %w", err)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s (plugins from %s)", err, pluginDir)
	}
	return res
}

// The reference runtime drives knit's bridge and ptp, knit's runtime drives
// Debian's reference bridge and ptp, and the results have the same shape.
func TestCrossRuntimeShapes(t *testing.T) {
	if _, err := os.Stat(refPluginDir + "/bridge"); err != nil {
		t.Skipf("reference plugins not installed in %s (apt install containernetworking-plugins)", refPluginDir)
	}
	lists := map[string]string{
		"bridge": `{"cniVersion":"1.0.0","name":"xrt","plugins":[{"type":"bridge","bridge":"xrtbr","isDefaultGateway":true,"ipMasq":true,"hairpinMode":true,
			"ipam":{"type":"host-local","dataDir":"%s","ranges":[[{"subnet":"10.24.0.0/16"}],[{"subnet":"fd00:24::/64"}]]}}]}`,
		"ptp": `{"cniVersion":"1.0.0","name":"xrt","plugins":[{"type":"ptp","ipMasq":true,"dns":{"nameservers":["10.1.1.1"]},
			"ipam":{"type":"host-local","dataDir":"%s","subnet":"10.25.0.0/24","routes":[{"dst":"0.0.0.0/0"}]}}]}`,
	}
	for typ, tmpl := range lists {
		t.Run(typ, func(t *testing.T) {
			var shapes []string
			for _, run := range []struct {
				name      string
				drive     driver
				pluginDir func(*plugintest.Lab) string
			}{
				{"libcni+knit", viaLibcni, func(l *plugintest.Lab) string { return l.Plugins }},
				{"knit+reference", viaKnitRuntime, func(*plugintest.Lab) string { return refPluginDir }},
				{"knit+knit", viaKnitRuntime, func(l *plugintest.Lab) string { return l.Plugins }},
			} {
				l := newLab(t)
				c := nstest.New(t, "xr")
				list := []byte(fmt.Sprintf(tmpl, l.DataDir))
				res := run.drive(t, l, run.pluginDir(l), c, list)
				s := shape(res)
				t.Logf("%s: %s", run.name, s)
				shapes = append(shapes, s)
				if nstest.LinkExists(t, c, "eth0") {
					t.Errorf("%s: eth0 left after DEL", run.name)
				}
			}
			for _, s := range shapes[1:] {
				if s != shapes[0] {
					t.Errorf("result shapes differ:\n%s\n%s", shapes[0], s)
				}
			}
		})
	}
}
