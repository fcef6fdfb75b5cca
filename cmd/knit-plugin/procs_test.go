package main

import (
	"runtime"
	"testing"
)

func TestOneProc(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(before) })

	runtime.GOMAXPROCS(2)
	t.Setenv("GOMAXPROCS", "2")
	oneProc()
	if got := runtime.GOMAXPROCS(0); got != 2 {
		t.Errorf("GOMAXPROCS set in the environment: got %d procs, want the environment's 2", got)
	}

	t.Setenv("GOMAXPROCS", "")
	oneProc()
	if got := runtime.GOMAXPROCS(0); got != 1 {
		t.Errorf("GOMAXPROCS unset: got %d procs, want 1", got)
	}
}
