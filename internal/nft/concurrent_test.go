package nft

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	vnetns "github.com/vishvananda/netns"
)

// checkOneNetwork asserts that a network's objects exist exactly once and
// that the set holds want elements.
func checkOneNetwork(t *testing.T, fd int, network string, want int) {
	t.Helper()
	c := rawConn(t, fd)
	obj := objectsFor(ipv4, network)
	if n := len(rules(t, c, ipv4, PostroutingChain)); n != 1 {
		t.Errorf("postrouting has %d rules, want exactly 1 jump", n)
	}
	if n := len(rules(t, c, ipv4, obj.chain.Name)); n != 3 {
		t.Errorf("chain %s has %d rules, want 3", obj.chain.Name, n)
	}
	if got := elements(t, c, obj.srcs); len(got) != want {
		t.Errorf("set %s has %d elements, want %d", obj.srcs.Name, len(got), want)
	}
}

// TestConcurrentAdds runs Adds for one new network from 8 goroutines, each
// with its own Masq (so its own netlink sockets and lock file handle).
func TestConcurrentAdds(t *testing.T) {
	_, fd := testNS(t, "nfg")
	lockPath := filepath.Join(t.TempDir(), "nft.lock")
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := NewMasq(WithNetNS(fd), WithLockFile(lockPath))
			defer m.Close()
			for j := range 4 {
				o := Owner{Network: "concnet", ContainerID: fmt.Sprintf("g%d-%d", i, j), IfName: "eth0"}
				if err := m.Add(o, cidrs(t, fmt.Sprintf("10.44.%d.%d/16", i, j+2))); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	checkOneNetwork(t, fd, "concnet", 32)
}

// TestConcurrentProcesses does the same from separate processes (this test
// binary re-executed), which only the lock file keeps apart.
func TestConcurrentProcesses(t *testing.T) {
	path, fd := testNS(t, "nfp")
	lockPath := filepath.Join(t.TempDir(), "nft.lock")
	exe, err := os.Executable()
	must(t, err)
	var cmds []*exec.Cmd
	for i := range 4 {
		cmd := exec.Command(exe, "-test.run=^TestHelperProcess$")
		cmd.Env = append(os.Environ(), "KNIT_NFT_HELPER="+strconv.Itoa(i), "KNIT_NFT_NS="+path, "KNIT_NFT_LOCK="+lockPath)
		cmd.Stderr = os.Stderr
		cmds = append(cmds, cmd)
	}
	for _, cmd := range cmds {
		must(t, cmd.Start())
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("helper process %d: %v", i, err)
		}
	}
	checkOneNetwork(t, fd, "procnet", 4*8)
}

// TestHelperProcess is the body of TestConcurrentProcesses' children.
func TestHelperProcess(t *testing.T) {
	id := os.Getenv("KNIT_NFT_HELPER")
	if id == "" {
		t.Skip("helper for TestConcurrentProcesses")
	}
	h, err := vnetns.GetFromPath(os.Getenv("KNIT_NFT_NS"))
	must(t, err)
	defer h.Close()
	m := NewMasq(WithNetNS(int(h)), WithLockFile(os.Getenv("KNIT_NFT_LOCK")))
	defer m.Close()
	for j := range 8 {
		o := Owner{Network: "procnet", ContainerID: "p" + id + "-" + strconv.Itoa(j), IfName: "eth0"}
		must(t, m.Add(o, cidrs(t, "10.45."+id+"."+strconv.Itoa(j+2)+"/16")))
	}
}
