package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/knit-cni/knit/pkg/cni"
)

// attachmentView is one row of `knit ls`, and its JSON form.
type attachmentView struct {
	Network     string      `json:"network"`
	ContainerID string      `json:"containerID"`
	IfName      string      `json:"ifName"`
	NetNS       string      `json:"netns,omitempty"`
	Addresses   []string    `json:"addresses"`
	Args        [][2]string `json:"args,omitempty"`
	CacheFile   string      `json:"cacheFile,omitempty"`
	Result      *cni.Result `json:"result,omitempty"`
}

func newLsCmd(g *globals) *cobra.Command {
	var output, network, container string
	cmd := &cobra.Command{
		Use:     "ls [--net NET] [--container ID] [-o json]",
		Aliases: []string{"list"},
		Short:   "List attachments from the result cache",
		Long: `List the attachments recorded in the result cache (--cache-dir): network,
container ID, interface, namespace and the addresses the plugins assigned.
The cache is shared with other runtimes using the same directory.`,
		Args: exactArgs(0, "no arguments (filter with --net or --container)"),
		RunE: func(_ *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			atts, err := g.newCNI().GetCachedAttachments(container)
			if err != nil {
				return fmt.Errorf("reading the result cache in %s: %w", g.cacheDir, err)
			}
			views := []attachmentView{}
			for _, a := range atts {
				if network != "" && a.NetworkName != network {
					continue
				}
				v := attachmentView{
					Network: a.NetworkName, ContainerID: a.ContainerID, IfName: a.IfName,
					NetNS: a.NetNS, Args: a.Args, CacheFile: a.CacheFile, Result: a.Result,
					Addresses: []string{},
				}
				if a.Result != nil {
					for _, ip := range a.Result.IPs {
						v.Addresses = append(v.Addresses, ip.Address.String())
					}
				}
				views = append(views, v)
			}
			if output == "json" {
				return writeJSON(g.stdout, views)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NETWORK\tCONTAINER\tIFNAME\tNETNS\tADDRESSES")
			for _, v := range views {
				addrs := strings.Join(v.Addresses, ",")
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", v.Network, v.ContainerID, v.IfName, dash(v.NetNS), dash(addrs))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: \"\" (table) or json")
	cmd.Flags().StringVar(&network, "net", "", "only attachments to this network (by name)")
	cmd.Flags().StringVar(&container, "container", "", "only attachments of this container ID")
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
