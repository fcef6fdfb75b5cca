//go:build !knit_extra

package main

import "github.com/knit-cni/knit/plugins/meta/portmap"

func init() { register(portmap.Plugin{}, portmap.Info) }
