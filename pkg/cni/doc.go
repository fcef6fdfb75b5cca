// Package cni is knit's implementation of the Container Network Interface
// specification, versions 0.1.0 through 1.1.0: the error object and its codes,
// spec versions and their comparison, the result object in every version with
// conversion between them, network configuration (single plugin and list),
// CNI_ARGS and the identifier validation rules.
//
// The runtime side (loading configs, executing plugins, the result cache) lives
// in pkg/cni/runtime; the plugin side (environment + stdin → typed request) in
// pkg/cni/skel; executing a plugin binary in pkg/cni/invoke.
package cni
