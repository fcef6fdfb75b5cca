//go:build !knit_core

package main

import "github.com/knit-cni/knit/plugins/meta/tuning"

func init() { register(tuning.Plugin{}, tuning.Info) }
