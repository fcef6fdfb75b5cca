//go:build !knit_core

package main

import "github.com/knit-cni/knit/plugins/main/macvlan"

func init() { register(macvlan.Plugin{}, macvlan.Info) }
