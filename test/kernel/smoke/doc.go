// Package smoke holds the kernel harness's own proof tests: each creates,
// in namespaces it makes, the kind of link a knit plugin relies on (ipvlan,
// 802.1q vlan, dummy, vrf, macvlan, a vlan-filtering bridge, a moved host
// device) and checks it carries traffic or behaves as the plugin needs.
// On a kernel without the feature the test skips (internal/kfeature); under
// `make test-kernels` it must run and pass.
package smoke
