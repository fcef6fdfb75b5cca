//go:build !knit_extra

package main

import "github.com/knit-cni/knit/plugins/main/bridge"

func init() { register(bridge.Plugin{}, bridge.Info) }
