package main

import "github.com/knit-cni/knit/plugins/ipam/hostlocal"

func init() { register(hostlocal.Plugin, hostlocal.Info) }
