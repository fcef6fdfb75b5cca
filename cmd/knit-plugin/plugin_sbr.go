//go:build !knit_core

package main

import "github.com/knit-cni/knit/plugins/meta/sbr"

func init() { register(sbr.Plugin{}, sbr.Info) }
