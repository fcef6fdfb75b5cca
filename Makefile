# knit: build the CLI and the multi-call plugin binary, install the plugins,
# run the test suite or the demo. Needs Go 1.26; install, test and demo run
# as root.

GO         ?= go
BIN        ?= bin
CNI_BIN_DIR ?= /opt/cni/bin

.PHONY: all build install test demo clean

all: build

# The plugin binaries are exec'd once per CNI operation: -trimpath and a
# stripped symbol table keep them small and quick to load, and CGO_ENABLED=0
# makes them static (no dynamic loader, libc or cgo thread set-up at start:
# ~1 ms less wall and CPU per exec, measured; they need no cgo). The common
# plugins get a binary of their own, smaller and so quicker to start (see
# cmd/knit-plugin's doc comment); the others are in knit-plugin-extra.
build:
	$(GO) build -o $(BIN)/knit ./cmd/knit
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -tags knit_core -o $(BIN)/knit-plugin ./cmd/knit-plugin
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -tags knit_extra -o $(BIN)/knit-plugin-extra ./cmd/knit-plugin

# Copies bin/knit-plugin and bin/knit-plugin-extra into CNI_BIN_DIR with one
# link per plugin type.
install: build
	$(BIN)/knit install --dir $(CNI_BIN_DIR)

test:
	scripts/test

demo:
	scripts/demo

clean:
	rm -rf $(BIN)

# End-to-end: Podman, containerd (ctr) and the reference cnitool on the knit
# plugins, in a private sandbox. Installs its packages; root only.
.PHONY: e2e
e2e:
	test/e2e/run

# Benchmark knit's plugins against the reference plugins (Debian's and
# upstream's), all driven by the reference cnitool, in namespaces of its
# own. Installs what it needs; the reference builds are cached in
# BENCH_CACHE. Writes bench/results/DATE.md and DATE.png. Takes about
# 30-40 minutes; BENCH_FLAGS=-quick for a smoke run of a few minutes.
BENCH_CACHE   ?= /var/cache/knit-bench
BENCH_FLAGS   ?=
REF_PLUGINS   ?= v1.10.0
REF_CNITOOL   ?= v1.3.1
REF_NEW_DIR    = $(BENCH_CACHE)/plugins-$(REF_PLUGINS)
REF_TOOL_DIR   = $(BENCH_CACHE)/cnitool-$(REF_CNITOOL)

.PHONY: bench
bench: build
	@command -v iperf3 >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iperf3; }
	@test -x /usr/lib/cni/portmap || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq containernetworking-plugins; }
	@test -x $(REF_NEW_DIR)/portmap || GOFLAGS= GOBIN=$(REF_NEW_DIR) $(GO) install -trimpath -ldflags='-s -w' \
		github.com/containernetworking/plugins/plugins/main/bridge@$(REF_PLUGINS) \
		github.com/containernetworking/plugins/plugins/main/ptp@$(REF_PLUGINS) \
		github.com/containernetworking/plugins/plugins/main/loopback@$(REF_PLUGINS) \
		github.com/containernetworking/plugins/plugins/ipam/host-local@$(REF_PLUGINS) \
		github.com/containernetworking/plugins/plugins/meta/portmap@$(REF_PLUGINS)
	@test -x $(REF_TOOL_DIR)/cnitool || GOFLAGS= GOBIN=$(REF_TOOL_DIR) $(GO) install github.com/containernetworking/cni/cnitool@$(REF_CNITOOL)
	rm -rf $(BENCH_CACHE)/knit
	$(BIN)/knit install --dir $(BENCH_CACHE)/knit
	$(GO) build -o $(BIN)/knit-bench ./bench/harness
	$(BIN)/knit-bench -knit $(BENCH_CACHE)/knit -deb /usr/lib/cni -new $(REF_NEW_DIR) \
		-cnitool $(REF_TOOL_DIR)/cnitool -out bench/results $(BENCH_FLAGS)

# Runs the plugin integration tests inside Debian's 6.1 and 6.12 cloud
# kernels under qemu (TCG), where ipvlan, vlan, dummy, vrf, bonding and the
# rest exist even if this machine's kernel lacks them. Needs root; kernels
# are cached in $KNIT_KERNEL_CACHE (default /var/cache/knit-kernels), never
# installed. KERNEL_TEST_FLAGS: e.g. -kernels 6.12 -run TestVlan -v.
.PHONY: test-kernels
test-kernels:
	$(GO) run ./test/kernel $(KERNEL_TEST_FLAGS)
