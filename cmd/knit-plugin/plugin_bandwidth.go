//go:build !knit_core

package main

import "github.com/knit-cni/knit/plugins/meta/bandwidth"

func init() { register(bandwidth.Plugin{}, bandwidth.Info) }
