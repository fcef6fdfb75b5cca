//go:build !knit_extra

package main

import "github.com/knit-cni/knit/plugins/main/ptp"

func init() { register(ptp.Plugin{}, ptp.Info) }
