//go:build !knit_core

package main

import "github.com/knit-cni/knit/plugins/main/dummy"

func init() { register(dummy.Plugin{}, dummy.Info) }
