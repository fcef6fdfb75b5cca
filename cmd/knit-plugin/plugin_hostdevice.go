//go:build !knit_core

package main

import hostdevice "github.com/knit-cni/knit/plugins/main/host-device"

func init() { register(hostdevice.Plugin{}, hostdevice.Info) }
