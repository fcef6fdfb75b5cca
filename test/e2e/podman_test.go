package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const (
	podNet    = marker + "-pod"
	podBridge = marker + "br0"
	podSubnet = "10.89.77.0/24"
	podGW     = "10.89.77.1"
	podImage  = "localhost/" + marker + "-bb:latest"
	podPort   = "18080"
)

var (
	podmanOnce sync.Once
	podmanEnv  []string
	podmanErr  error
)

// podman returns the environment Podman runs with: a containers.conf of
// our own (CNI backend, plugins only from knit's directory, runc, limits
// this machine allows) and the busybox image imported without a registry.
func podman(t testing.TB) []string {
	t.Helper()
	root := rootfs(t)
	podmanOnce.Do(func() { podmanEnv, podmanErr = setupPodman(root) })
	if podmanErr != nil {
		t.Fatal(podmanErr)
	}
	return podmanEnv
}

func setupPodman(root string) ([]string, error) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return nil, err
	}
	// Podman's defaults ask for more open files than the hard limit allows
	// and lower its own NPROC limit to 32768 (see the real-clients notes);
	// crun cannot run on a hybrid cgroup host, runc can.
	conf := fmt.Sprintf(`[containers]
default_ulimits = ["nofile=%d:%d", "nproc=32768:32768"]
[network]
network_backend = "cni"
cni_plugin_dirs = [%q]
network_config_dir = "/etc/cni/net.d"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
image_copy_tmp_dir = %q
`, lim.Max, lim.Max, pluginDir, scratch("tmp"))
	if err := os.MkdirAll(scratch("tmp"), 0o755); err != nil {
		return nil, err
	}
	path := scratch("containers.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	env := []string{"CONTAINERS_CONF=" + path, "TMPDIR=" + scratch("tmp")}
	if out, err := output(env, "podman", "info", "--format", "{{.Host.NetworkBackend}}"); err != nil || strings.TrimSpace(out) != "cni" {
		return nil, fmt.Errorf("podman does not use the CNI backend (%q): %v", out, err)
	}
	tarball := scratch("bb.tar")
	if _, err := output(nil, "tar", "-C", root, "-cf", tarball, "."); err != nil {
		return nil, err
	}
	if _, err := output(env, "podman", "import", "--change", `CMD ["/bin/sh"]`, tarball, podImage); err != nil {
		return nil, err
	}
	return env, nil
}

// podConflist is the Podman network: bridge + host-local, then portmap,
// firewall and tuning as far as knit provides them (the list names which).
func podConflist(t testing.TB) (map[string]any, []string) {
	plugins := []any{map[string]any{
		"type": "bridge", "bridge": podBridge, "isGateway": true, "ipMasq": true, "hairpinMode": true,
		"ipam": map[string]any{
			"type":   "host-local",
			"ranges": [][]map[string]string{{{"subnet": podSubnet, "gateway": podGW}}},
			"routes": []map[string]string{{"dst": "0.0.0.0/0"}},
		},
	}}
	used := []string{"bridge", "host-local"}
	if hasPlugin(t, "portmap") {
		plugins = append(plugins, map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}})
		used = append(used, "portmap")
	}
	if hasPlugin(t, "firewall") {
		plugins = append(plugins, map[string]any{"type": "firewall"})
		used = append(used, "firewall")
	}
	if hasPlugin(t, "tuning") {
		plugins = append(plugins, map[string]any{"type": "tuning", "sysctl": map[string]string{"net.ipv4.conf.eth0.arp_notify": "1"}})
		used = append(used, "tuning")
	}
	return map[string]any{"cniVersion": "1.0.0", "name": podNet, "plugins": plugins}, used
}

type podContainer struct{ name, id, netns, ip string }

func TestPodman(t *testing.T) {
	enabled(t)
	env := podman(t)
	conf, used := podConflist(t)
	t.Logf("network %s: %s", podNet, strings.Join(used, " + "))
	confPath := "/etc/cni/net.d/50-" + podNet + ".conflist"
	writeJSON(t, confPath, conf)
	names := []string{marker + "-a", marker + "-b", marker + "-web"}
	t.Cleanup(func() {
		_, _ = output(env, "podman", append([]string{"rm", "-f", "-t0", "--ignore"}, names...)...)
		_ = os.Remove(confPath)
		_, _ = output(nil, "ip", "link", "del", podBridge)
	})

	rulesBefore := nftRuleset(t)
	linksBefore := links(t)
	start := time.Now()
	var ctrs []podContainer
	for _, name := range names[:2] {
		run(t, env, "podman", "run", "-d", "--cap-add", "NET_RAW", "--name", name, "--network", podNet, podImage, "sleep", "600")
		ctrs = append(ctrs, inspectPod(t, env, name))
	}
	t.Logf("two containers up in %.2fs: %v", time.Since(start).Seconds(), ctrs)
	a, b := ctrs[0], ctrs[1]

	t.Run("traffic", func(t *testing.T) {
		run(t, env, "podman", "exec", a.name, "ping", "-c2", "-W2", b.ip)
		run(t, env, "podman", "exec", b.name, "ping", "-c2", "-W2", a.ip)
		run(t, env, "podman", "exec", a.name, "ping", "-c2", "-W2", podGW)
		run(t, nil, "busybox", "ping", "-c2", "-W2", a.ip)
	})

	if hasPlugin(t, "portmap") {
		t.Run("published port", func(t *testing.T) {
			run(t, env, "podman", "run", "-d", "--name", names[2], "--network", podNet, "-p", podPort+":80",
				podImage, "httpd", "-f", "-p", "80", "-h", "/www")
			ctrs = append(ctrs, inspectPod(t, env, names[2]))
			for _, host := range []string{podGW, "127.0.0.1"} {
				url := "http://" + host + ":" + podPort + "/"
				eventually(t, 10*time.Second, "GET "+url, func() error {
					return httpGet(url)
				})
			}
			// and from another container, through the host port
			out := run(t, env, "podman", "exec", a.name, "sh", "-c",
				`printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 2 `+podGW+" "+podPort)
			if !strings.Contains(out, marker) {
				t.Errorf("from container a through the host port: %q", out)
			}
		})
	}

	if hasPlugin(t, "tuning") {
		t.Run("tuning sysctl", func(t *testing.T) {
			out := run(t, env, "podman", "exec", a.name, "cat", "/proc/sys/net/ipv4/conf/eth0/arp_notify")
			if strings.TrimSpace(out) != "1" {
				t.Errorf("arp_notify in the container = %q, want 1 (set by tuning)", out)
			}
		})
	}

	t.Run("knit ls and check", func(t *testing.T) {
		entries := knitLs(t, podNet)
		for _, c := range ctrs {
			found := false
			for _, e := range entries {
				if e.ContainerID == c.id && e.IfName == "eth0" {
					found = true
					if len(e.Addresses) != 1 || !strings.HasPrefix(e.Addresses[0], c.ip+"/") {
						t.Errorf("knit ls shows %s with %v, podman says %s", c.name, e.Addresses, c.ip)
					}
				}
			}
			if !found {
				t.Errorf("knit ls --net %s does not show %s (%s): %+v", podNet, c.name, c.id, entries)
				continue
			}
			out := knit(t, "check", podNet, c.id, "--netns", c.netns)
			if !strings.Contains(out, "ok") {
				t.Errorf("knit check %s: %q", c.name, out)
			}
		}
	})

	t.Run("rm releases everything", func(t *testing.T) {
		start := time.Now()
		args := []string{"rm", "-f", "-t0"}
		for _, c := range ctrs {
			args = append(args, c.name)
		}
		run(t, env, "podman", args...)
		t.Logf("podman rm -f of %d containers: %.2fs", len(ctrs), time.Since(start).Seconds())
		if ips := leasedIPs(t, podNet); len(ips) > 0 {
			t.Errorf("host-local still holds %v", ips)
		}
		if files := cacheFiles(t, podNet); len(files) > 0 {
			t.Errorf("cache files left: %v", files)
		}
		for _, l := range links(t) {
			if l != podBridge && !contains(linksBefore, l) {
				t.Errorf("link %s left in the host namespace", l)
			}
		}
		if out := run(t, nil, "ip", "-br", "link", "show", "master", podBridge); strings.TrimSpace(out) != "" {
			t.Errorf("ports left on %s: %s", podBridge, out)
		}
		rules := nftRuleset(t)
		for _, c := range ctrs {
			for _, s := range []string{c.ip + " ", c.ip + "\n", c.id[:12]} {
				if strings.Contains(rules, s) {
					t.Errorf("nftables still mentions %s (%q):\n%s", c.name, strings.TrimSpace(s), rules)
				}
			}
		}
		if rules != rulesBefore {
			t.Logf("nftables before the containers:\n%s\nafter rm (tables/chains kept for the network):\n%s", rulesBefore, rules)
		}
	})
}

// httpGet fetches url from the host side (the sandbox namespace) and
// checks it is the page the test containers serve.
func httpGet(url string) error {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), marker) {
		return fmt.Errorf("%s: %s %q", url, resp.Status, body)
	}
	return nil
}

// inspectPod returns a container's ID, namespace path and address.
func inspectPod(t testing.TB, env []string, name string) podContainer {
	t.Helper()
	out := run(t, env, "podman", "inspect", "-f",
		`{{.Id}} {{.NetworkSettings.SandboxKey}} {{(index .NetworkSettings.Networks "`+podNet+`").IPAddress}}`, name)
	f := strings.Fields(out)
	if len(f) != 3 {
		t.Fatalf("podman inspect %s: %q", name, out)
	}
	return podContainer{name: name, id: f[0], netns: f[1], ip: f[2]}
}
