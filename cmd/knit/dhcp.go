package main

import (
	"context"
	"log/slog"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/knit-cni/knit/internal/dhcpd"
	"github.com/knit-cni/knit/internal/dhcpd/api"
)

// newDHCPCmd is `knit dhcp`: the daemon the dhcp IPAM plugin talks to.
func newDHCPCmd(g *globals) *cobra.Command {
	var cfg dhcpd.Config
	cmd := &cobra.Command{
		Use:   "dhcp",
		Short: "run the DHCP lease daemon the dhcp IPAM plugin needs",
		Long: `knit dhcp acquires, renews and releases DHCP leases for container interfaces
on behalf of the "dhcp" IPAM plugin, which reaches it on a unix socket.

Leases are kept in the state directory, one JSON file each, so restarting the
daemon keeps and renews them; leases of containers whose network namespace
is gone are dropped. It runs until interrupted (SIGINT or SIGTERM); stopping
it releases nothing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("log-level") {
				// A daemon's log is its record of leases: info by default.
				slog.SetDefault(slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))
			}
			d, err := dhcpd.New(cfg)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return d.Serve(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.SocketPath, "socket", api.DefaultSocket, "unix socket the plugin connects to (ipam.daemonSocketPath)")
	f.StringVar(&cfg.StateDir, "state-dir", dhcpd.DefaultStateDir, "directory where leases are persisted")
	f.DurationVar(&cfg.Timeout, "dhcp-timeout", 5*time.Second, "how long to wait for each DHCP answer (3 tries)")
	f.DurationVar(&cfg.RetryMin, "retry-min", 30*time.Second, "shortest wait before retrying a failed renewal or acquisition")
	return cmd
}
