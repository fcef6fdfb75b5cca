package nft

import "time"

// The closer holds Detach's socket duplicates until its parent has exited
// (EOF on a pipe or socket whose other end only the parent holds), so that
// its own close drops the last references and the kernel's wait happens
// there, then exits. It runs in a session of its own with /dev/null as
// stdio, so a runtime reading the parent's output sees EOF when the parent
// exits and never waits for the closer; once the parent has exited, init
// (or the runtime, if it is a child subreaper that reaps) reaps it.
// Nothing it does can change the parent's result.
//
// ForkCloser (fork_linux.go) starts one: a clone of this process that runs
// only raw system calls, sharing this process's memory on amd64 and arm64
// (so that this process's exit leaves tearing the address space down to
// the closer) and a plain fork elsewhere. (An exec'd closer, a second
// program started for the purpose, was used before: it cost the program's
// start-up, ~3 ms of CPU, and blocked the caller until the exec.)

// closerMaxWait bounds the closer's wait for its parent's exit (a
// variable only so that tests can shorten it).
var closerMaxWait = 10 * time.Second

// closerLinger is how long the closer keeps the sockets after its parent
// has exited. Their release holds nf_tables' commit lock through the
// kernel's wait for the pending transaction cleanup (an RCU grace period,
// 8–20 ms), and every nftables change in the namespace waits for that lock.
// Released at once, the sockets of a plugin would block the plugin the
// runtime runs next in the chain, which commits a few milliseconds later
// (portmap after bridge; bridge's DEL after portmap's). Some 50 ms later
// the chain is done and the cleanup has long finished, so the release
// holds the lock for microseconds. Measured through cnitool on bridge +
// portmap, interleaved, n=40: ADD 26.7 → 23.3 ms, DEL 45.3 → 38.0 ms with
// 40 ms; 100 ms gave the same.
var closerLinger = 50 * time.Millisecond
