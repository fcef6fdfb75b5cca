//go:build !knit_extra

package main

import "github.com/knit-cni/knit/plugins/meta/firewall"

func init() { register(firewall.Plugin{}, firewall.Info) }
