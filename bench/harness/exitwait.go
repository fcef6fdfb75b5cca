package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"time"

	"github.com/knit-cni/knit/internal/netns"
	"github.com/knit-cni/knit/internal/nft"
)

// exitChildEnv makes the harness binary act as a short-lived child that
// does one nftables masquerade Add (or nothing), says "done" and exits
// without closing its sockets, as a plugin does. In "nft-handoff" mode it
// then hands them to a forked closer (nft.ForkCloser) through nft.HandOff
// before exiting, as knit-plugin does after writing its answer, so the row
// includes starting the closer.
const exitChildEnv = "KNIT_BENCH_EXIT_CHILD"

// exitChild is the child's side; it never returns.
func exitChild(mode string) {
	if mode == "nft" || mode == "nft-handoff" {
		o := nft.Owner{Network: "kbexit", ContainerID: fmt.Sprintf("c%d", os.Getpid()), IfName: "eth0"}
		addr := []net.IPNet{{IP: net.IPv4(10, 94, byte(os.Getpid()>>8), byte(os.Getpid())), Mask: net.CIDRMask(16, 32)}}
		if err := nft.NewMasq().Add(o, addr); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
	}
	fmt.Println("done")
	if mode == "nft-handoff" {
		nft.SetHandOff(func(fds []int) error {
			_, err := nft.ForkCloser(fds)
			return err
		})
		if err := nft.HandOff(); err != nil {
			fmt.Fprintln(os.Stderr, "hand-off:", err)
			os.Exit(1)
		}
	}
	os.Exit(0)
}

// exitWait measures, for a child process in the host namespace, the time
// from its last output to its reaping: what a runtime waits for after a
// plugin has printed its result.
func (h *host) exitWait(mode string) (float64, error) {
	self, err := os.Executable()
	if err != nil {
		return 0, err
	}
	var d time.Duration
	err = netns.Do(h.path, func() error {
		cmd := exec.Command(self)
		cmd.Env = append(os.Environ(), exitChildEnv+"="+mode)
		out, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		if err := cmd.Start(); err != nil {
			return err
		}
		line, err := bufio.NewReader(out).ReadString('\n')
		start := time.Now()
		werr := cmd.Wait()
		d = time.Since(start)
		if err != nil || line != "done\n" {
			return fmt.Errorf("exit-wait child (%s): %q %v", mode, line, err)
		}
		return werr
	})
	return ms(d), err
}
