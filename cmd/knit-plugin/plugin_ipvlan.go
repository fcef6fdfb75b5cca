//go:build !knit_core

package main

import "github.com/knit-cni/knit/plugins/main/ipvlan"

func init() { register(ipvlan.Plugin{}, ipvlan.Info) }
