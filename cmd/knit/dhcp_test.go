package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/knit-cni/knit/internal/dhcpd/api"
)

// `knit dhcp` serves on its socket, `knit status` of a dhcp network follows
// it, a second daemon on the same socket is refused, and SIGTERM stops it
// cleanly, removing the socket and keeping the state directory.
func TestDHCPDaemonCommand(t *testing.T) {
	e := newEnv(t)
	if !hasPlugin(t, "dhcp") {
		t.Skip("knit-plugin has no dhcp plugin")
	}
	dir := t.TempDir()
	sock, state := filepath.Join(dir, "run", "dhcp.sock"), filepath.Join(dir, "state")
	e.conflist("dnet", "1.1.0", `{"type":"dhcp","ipam":{"type":"dhcp","daemonSocketPath":"`+sock+`"}}`)
	if r := e.run("status", "dnet"); r.code == 0 || !strings.Contains(r.stderr+r.stdout, "knit dhcp") {
		t.Fatalf("status without the daemon: %s", r)
	}

	cmd := e.command("dhcp", "--socket", sock, "--state-dir", state)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	wait, err := startIn(e.host, cmd)
	if err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill() // this test's daemon, by PID
		<-exited
	})
	deadline := time.Now().Add(10 * time.Second)
	for api.NewClient(sock).Do(context.Background(), "GET", "/v1/status", nil, nil) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("knit dhcp did not start serving:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.ok("status", "dnet")

	if r := e.run("dhcp", "--socket", sock, "--state-dir", state); r.code == 0 || !strings.Contains(r.stderr, "already serving") {
		t.Fatalf("second daemon on the same socket: %s", r)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Fatalf("knit dhcp after SIGTERM: %v\n%s", err, out.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("knit dhcp did not stop on SIGTERM")
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Fatalf("socket left behind: %v", err)
	}
	if fi, err := os.Stat(state); err != nil || !fi.IsDir() {
		t.Fatalf("state dir: %v", err)
	}
}
