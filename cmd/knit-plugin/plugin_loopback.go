//go:build !knit_extra

package main

import "github.com/knit-cni/knit/plugins/main/loopback"

func init() { register(loopback.Plugin{}, loopback.Info) }
