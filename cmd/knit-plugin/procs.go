package main

import (
	"os"
	"runtime"
)

// oneProc runs the plugin's goroutines on one P unless GOMAXPROCS is set.
//
// A plugin is a short, mostly sequential chain of system calls. With a P per
// CPU, every netlink call that blocks briefly lets the runtime hand the idle
// P to another thread that spins looking for work and parks again, which
// costs CPU and page faults but gains no wall time. One P keeps goroutines
// (netns switches on locked threads, the in-process IPAM delegate) correct
// and concurrent, just not parallel.
func oneProc() {
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
}
