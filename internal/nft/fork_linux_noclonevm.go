//go:build linux && !(amd64 || arm64)

package nft

import "syscall"

// haveCloneVM says whether cloneVM is implemented here: not on this
// architecture, where the closer is a plain fork.
const haveCloneVM = false

// cloneVM is implemented only on amd64 and arm64 (fork_linux_clonevm.go);
// here it fails as a missing system call would, and the caller falls back
// to a plain fork.
func cloneVM(flags, stack, size uintptr, p *closerPlan, child func(*closerPlan) uintptr) (pid, errno uintptr) {
	return 0, uintptr(syscall.ENOSYS)
}
