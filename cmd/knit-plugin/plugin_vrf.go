//go:build !knit_core

package main

import "github.com/knit-cni/knit/plugins/meta/vrf"

func init() { register(vrf.Plugin{}, vrf.Info) }
