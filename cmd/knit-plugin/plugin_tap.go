//go:build !knit_core

package main

import "github.com/knit-cni/knit/plugins/main/tap"

func init() { register(tap.Plugin{}, tap.Info) }
