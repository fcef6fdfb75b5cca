# knit: build the CLI and the multi-call plugin binary, install the plugins,
# run the test suite or the demo. Needs Go 1.26; install, test and demo run
# as root.

GO         ?= go
BIN        ?= bin
CNI_BIN_DIR ?= /opt/cni/bin

.PHONY: all build install test demo clean

all: build

# The plugin binary is exec'd once per CNI operation: -trimpath and a
# stripped symbol table keep it small and quick to load.
build:
	$(GO) build -o $(BIN)/knit ./cmd/knit
	$(GO) build -trimpath -ldflags='-s -w' -o $(BIN)/knit-plugin ./cmd/knit-plugin

# Copies bin/knit-plugin into CNI_BIN_DIR with one link per plugin type.
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
