// Package runtime is the runtime side of CNI, what libcni is for containerd
// and Podman: it loads network configuration lists from disk, derives each
// plugin's request configuration, runs the plugins of a list for ADD, CHECK,
// DEL, GC and STATUS, chains prevResult, and keeps the result cache in the
// reference's on-disk layout so other runtimes and knit share it.
package runtime
