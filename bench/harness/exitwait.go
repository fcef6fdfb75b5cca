package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/knit-cni/knit/internal/netns"
	"github.com/knit-cni/knit/internal/nft"
	"golang.org/x/sys/unix"
)

// exitChildEnv makes the harness binary act as a short-lived child that
// does one nftables masquerade Add (or nothing), says "done" and exits
// without closing its sockets, as a plugin does.
const exitChildEnv = "KNIT_BENCH_EXIT_CHILD"

// exitChild is the child's side; it never returns.
func exitChild(mode string) {
	if mode == "nft" {
		o := nft.Owner{Network: "kbexit", ContainerID: fmt.Sprintf("c%d", os.Getpid()), IfName: "eth0"}
		addr := []net.IPNet{{IP: net.IPv4(10, 94, byte(os.Getpid()>>8), byte(os.Getpid())), Mask: net.CIDRMask(16, 32)}}
		if err := nft.NewMasq().Add(o, addr); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
	}
	if mode == "nft-handoff" || mode == "hold" {
		handOff(mode)
	}
	fmt.Println("done")
	os.Exit(0)
}

// handOff prototypes a fix: before exiting, pass every open socket to a
// detached child that closes them, so the kernel's wait on the last close
// is off the runtime's path. As "hold" it is that child.
func handOff(mode string) {
	if mode == "hold" {
		for fd := 3; fd < 64; fd++ {
			unix.Close(fd) // pays the RCU wait here, unobserved
		}
		os.Exit(0)
	}
	o := nft.Owner{Network: "kbexit", ContainerID: fmt.Sprintf("c%d", os.Getpid()), IfName: "eth0"}
	addr := []net.IPNet{{IP: net.IPv4(10, 94, byte(os.Getpid()>>8), byte(os.Getpid())), Mask: net.CIDRMask(16, 32)}}
	if err := nft.NewMasq().Add(o, addr); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	var files []*os.File
	ents, _ := os.ReadDir("/proc/self/fd")
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd < 3 {
			continue
		}
		if t, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(t, "socket:") {
			files = append(files, os.NewFile(uintptr(fd), t))
		}
	}
	self, _ := os.Executable()
	cmd := exec.Command(self)
	cmd.Env = []string{exitChildEnv + "=hold"}
	cmd.ExtraFiles = files
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("done")
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
