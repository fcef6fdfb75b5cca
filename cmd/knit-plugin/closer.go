package main

// The closer: a plugin that changed nftables would wait 8–20 ms at exit
// while the kernel releases its nftables sockets (see internal/nft's
// Detach). Instead, after the answer is written (skel.AtExit), or earlier
// when a plugin is done with nftables (nft.HandOff), the plugin clones a
// closer (nft.ForkCloser: a clone that runs only raw system calls, no exec,
// sharing the plugin's memory on amd64 and arm64) that holds duplicates of
// those sockets and nothing else, and exits at once; the closer releases
// them after the plugin is gone, where no runtime waits for it, and, sharing
// the memory, also tears the plugin's address space down then.

import (
	"log/slog"

	"github.com/knit-cni/knit/internal/nft"
	"github.com/knit-cni/knit/pkg/cni/skel"
)

func init() {
	nft.SetHandOff(func(fds []int) error {
		_, err := nft.ForkCloser(fds)
		return err
	})
	skel.AtExit(func() {
		if err := nft.HandOff(); err != nil {
			slog.Debug("handing the nftables sockets to a closer", "error", err)
		}
	})
}
