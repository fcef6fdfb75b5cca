package main

// The closer: a plugin that changed nftables would wait 8–20 ms at exit
// while the kernel releases its nftables sockets (see internal/nft's
// Detach). Instead, after the answer is written (skel.AtExit), or earlier
// when a plugin is done with nftables (nft.HandOff), the plugin starts a
// copy of this binary as a closer (nft.StartCloser) that inherits
// duplicates of those sockets, and exits at once; the closer releases them
// after the plugin is gone, where no runtime waits for it.

import (
	"log/slog"
	"os"

	"github.com/knit-cni/knit/internal/nft"
	"github.com/knit-cni/knit/pkg/cni/skel"
)

func init() {
	if len(os.Args) == 2 && os.Args[1] == nft.CloserArg {
		nft.RunCloser()
		os.Exit(0)
	}
	nft.SetHandOff(func(fds []int) error {
		_, err := nft.StartCloser("/proc/self/exe", nil, fds)
		return err
	})
	skel.AtExit(func() {
		if err := nft.HandOff(); err != nil {
			slog.Debug("handing the nftables sockets to a closer", "error", err)
		}
	})
}
