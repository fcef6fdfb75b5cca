// Package invoke executes CNI plugin binaries: it finds a plugin along
// CNI_PATH, runs it with the request configuration on stdin and the CNI_*
// variables in its environment, and decodes its result, VERSION answer or
// error object. Runtimes (pkg/cni/runtime) use it to run the plugins of a
// network, and plugins use its Delegate* functions to run their IPAM plugin.
//
// A multi-call plugin binary can set DelegateExec to an InProcess so that a
// delegate that is the binary itself runs as a function call instead of an
// exec, with the outcome mapped exactly as for a process.
//
// It depends on the standard library and pkg/cni only, because it is linked
// into every plugin binary.
package invoke
