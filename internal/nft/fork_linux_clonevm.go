//go:build linux && (amd64 || arm64)

package nft

// haveCloneVM says whether cloneVM is implemented here.
const haveCloneVM = true

// cloneVM calls clone(flags, stack+size) (flags: CLONE_VM|SIGCHLD) and
// returns the child's PID, or the errno. The child starts on the stack at
// [stack, stack+size), calls child(p) there, unmaps that stack and calls
// exit_group with child's result; it never returns. child is closerChild:
// see the top of fork_linux.go for what that requires. It is called
// through its func value with the register-based internal ABI (the first
// argument and the result in AX on amd64, R0 on arm64), which is what
// ties this to those two architectures. Implemented in fork_linux_amd64.s
// and fork_linux_arm64.s.
func cloneVM(flags, stack, size uintptr, p *closerPlan, child func(*closerPlan) uintptr) (pid, errno uintptr)
