package main

import "github.com/knit-cni/knit/plugins/ipam/static"

func init() { register(static.Plugin, static.Info) }
