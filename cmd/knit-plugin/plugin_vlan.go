//go:build !knit_core

package main

import "github.com/knit-cni/knit/plugins/main/vlan"

func init() { register(vlan.Plugin{}, vlan.Info) }
