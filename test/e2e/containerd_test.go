package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	ctrNet    = marker + "-ctr"
	ctrBridge = marker + "ctr0"
	ctrSubnet = "10.89.80.0/24"
	// ctrNS is the containerd namespace; ctr passes "<namespace>-<id>" to
	// CNI as the container ID.
	ctrNS = marker
)

// containerd starts a containerd of our own (private root, state and
// socket; no CRI) and returns its socket. It is stopped by PID at cleanup.
func containerd(t *testing.T) string {
	t.Helper()
	dir := scratch("containerd")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "containerd.sock")
	conf := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
[ttrpc]
  address = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), sock, sock+".ttrpc")
	confPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("containerd", "--config", confPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logf.Close()
		if t.Failed() {
			if data, err := os.ReadFile(logf.Name()); err == nil {
				t.Logf("containerd log:\n%s", data)
			}
		}
	})
	eventually(t, 20*time.Second, "containerd answering", func() error {
		_, err := output(nil, "ctr", "-a", sock, "version")
		return err
	})
	return sock
}

func TestContainerd(t *testing.T) {
	enabled(t)
	env := podman(t) // the image comes from Podman as an OCI archive
	sock := containerd(t)
	ctr := func(t testing.TB, args ...string) string {
		t.Helper()
		return run(t, nil, "ctr", append([]string{"-a", sock, "-n", ctrNS}, args...)...)
	}
	archive := scratch("bb-oci.tar")
	run(t, env, "podman", "save", "--format", "oci-archive", "-o", archive, podImage)
	ctr(t, "images", "import", "--base-name", "localhost/"+marker+"-bb", archive)
	image := strings.TrimSpace(strings.Split(ctr(t, "images", "ls", "-q"), "\n")[0])
	t.Logf("image %s", image)

	// ctr reads only the alphabetically first file of /etc/cni/net.d and
	// only looks for plugins in /opt/cni/bin (here: knit install's output).
	plugins := []any{map[string]any{
		"type": "bridge", "bridge": ctrBridge, "isGateway": true,
		"ipam": map[string]any{"type": "host-local", "ranges": [][]map[string]string{{{"subnet": ctrSubnet}}}},
	}}
	used := "bridge + host-local"
	if hasPlugin(t, "firewall") {
		plugins = append(plugins, map[string]any{"type": "firewall"})
		used += " + firewall"
	}
	t.Logf("network %s: %s", ctrNet, used)
	confPath := "/etc/cni/net.d/00-" + ctrNet + ".conflist"
	writeJSON(t, confPath, map[string]any{"cniVersion": "1.0.0", "name": ctrNet, "plugins": plugins})

	ids := []string{marker + "-c1", marker + "-c2", marker + "-c3"}
	t.Cleanup(func() {
		for _, id := range ids {
			// detached runs are never DELeted by ctr: DEL them through knit
			_, _ = output(nil, binPath("knit"), "del", ctrNet, ctrNS+"-"+id)
			_, _ = output(nil, "ctr", "-a", sock, "-n", ctrNS, "task", "kill", "-s", "SIGKILL", id)
		}
		for _, id := range ids {
			eventually(t, 10*time.Second, "removing task "+id, func() error {
				_, err := output(nil, "ctr", "-a", sock, "-n", ctrNS, "task", "rm", "-f", id)
				if err != nil && strings.Contains(err.Error(), "not found") {
					return nil
				}
				return err
			})
			_, _ = output(nil, "ctr", "-a", sock, "-n", ctrNS, "containers", "rm", id)
		}
		_ = os.Remove(confPath)
		_, _ = output(nil, "ip", "link", "del", ctrBridge)
	})

	startDetached := func(id string) lsEntry {
		ctr(t, "run", "-d", "--cni", "--cap-add", "CAP_NET_RAW", image, id, "sleep", "600")
		return ctrAttachment(t, id)
	}
	c1 := startDetached(ids[0])
	ip1 := strings.Split(c1.Addresses[0], "/")[0]
	t.Logf("c1 attached: %+v", c1)
	run(t, nil, "busybox", "ping", "-c2", "-W2", ip1)

	t.Run("run --rm: address from knit, reaches another, DEL on exit", func(t *testing.T) {
		start := time.Now()
		out := ctr(t, "run", "--rm", "--cni", "--cap-add", "CAP_NET_RAW", image, ids[1],
			"sh", "-c", "ip -4 -o addr show eth0 && ping -c2 -W2 "+ip1)
		t.Logf("ctr run --rm (%.2fs):\n%s", time.Since(start).Seconds(), out)
		if !strings.Contains(out, "inet 10.89.80.") || !strings.Contains(out, "2 packets received") {
			t.Errorf("the container did not get a %s address or did not reach c1", ctrSubnet)
		}
		if f := cacheFiles(t, ctrNet); len(f) != 1 {
			t.Errorf("after ctr run --rm, cache files %v: want only c1's", f)
		}
		if ips := leasedIPs(t, ctrNet); len(ips) != 1 || ips[0] != ip1 {
			t.Errorf("after ctr run --rm, host-local holds %v: want only c1's %s", ips, ip1)
		}
	})

	t.Run("knit check", func(t *testing.T) {
		out := knit(t, "check", ctrNet, c1.ContainerID, "--netns", taskNetns(t, sock, ids[0]))
		if !strings.Contains(out, "ok") {
			t.Errorf("knit check: %q", out)
		}
	})

	t.Run("knit gc releases a detached container that was never DELeted", func(t *testing.T) {
		c3 := startDetached(ids[2])
		ip3 := strings.Split(c3.Addresses[0], "/")[0]
		ctr(t, "task", "kill", "-s", "SIGKILL", ids[0])
		eventually(t, 10*time.Second, "c1 stopped", func() error {
			_, err := output(nil, "ctr", "-a", sock, "-n", ctrNS, "task", "rm", ids[0])
			return err
		})
		ctr(t, "containers", "rm", ids[0])
		if ips := leasedIPs(t, ctrNet); len(ips) != 2 {
			t.Fatalf("after c1 died, host-local holds %v: want c1's and c3's (ctr never DELs a detached run)", ips)
		}
		gcArgs := []string{"gc", ctrNet}
		if c3.NetNS == "" {
			// containerd 1.6's libcni does not cache the namespace, so a
			// plain gc cannot tell the live from the dead: it must keep
			// both, and the live attachments are named with --keep.
			t.Logf("knit gc %s: %s", ctrNet, knit(t, "gc", ctrNet))
			if ips := leasedIPs(t, ctrNet); len(ips) != 2 {
				t.Fatalf("plain knit gc with namespaces unknown changed the leases: %v", ips)
			}
			gcArgs = append(gcArgs, "--keep", c3.ContainerID+"/eth0")
		}
		start := time.Now()
		out := knit(t, gcArgs...)
		t.Logf("knit %s (%.2fs): %s", strings.Join(gcArgs, " "), time.Since(start).Seconds(), out)
		if ips := leasedIPs(t, ctrNet); len(ips) != 1 || ips[0] != ip3 {
			t.Errorf("after knit gc, host-local holds %v: want only c3's %s", ips, ip3)
		}
		if f := cacheFiles(t, ctrNet); len(f) != 1 || !strings.Contains(f[0], c3.ContainerID) {
			t.Errorf("after knit gc, cache files %v: want only c3's", f)
		}
		if rules := nftRuleset(t); strings.Contains(rules, ip1+" ") || strings.Contains(rules, ip1+"\n") {
			t.Errorf("nftables still mentions c1's %s:\n%s", ip1, rules)
		}
		knit(t, "check", ctrNet, c3.ContainerID, "--netns", taskNetns(t, sock, ids[2]))
		run(t, nil, "busybox", "ping", "-c2", "-W2", ip3)
	})
}

// ctrAttachment waits for knit ls to show ctr's attachment of container id.
func ctrAttachment(t testing.TB, id string) lsEntry {
	t.Helper()
	var found lsEntry
	eventually(t, 10*time.Second, "knit ls showing "+id, func() error {
		for _, e := range knitLs(t, ctrNet) {
			if e.ContainerID == ctrNS+"-"+id && len(e.Addresses) == 1 {
				found = e
				return nil
			}
		}
		return fmt.Errorf("not listed")
	})
	return found
}

// taskNetns returns the network namespace of a running task.
func taskNetns(t testing.TB, sock, id string) string {
	t.Helper()
	for _, l := range strings.Split(run(t, nil, "ctr", "-a", sock, "-n", ctrNS, "task", "ls"), "\n") {
		if f := strings.Fields(l); len(f) >= 3 && f[0] == id {
			return "/proc/" + f[1] + "/ns/net"
		}
	}
	t.Fatalf("no task %s", id)
	return ""
}
