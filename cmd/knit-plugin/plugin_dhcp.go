//go:build !knit_core

package main

import "github.com/knit-cni/knit/plugins/ipam/dhcp"

func init() { register(dhcp.Plugin, dhcp.Info) }
