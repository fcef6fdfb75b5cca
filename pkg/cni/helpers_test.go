package cni_test

import (
	"net"
	"testing"

	"github.com/knit-cni/knit/pkg/cni"
)

func mustCIDR(t *testing.T, s string) net.IPNet {
	t.Helper()
	n, err := cni.ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	return *n
}

func netIPNet(ip string, mask []byte) net.IPNet {
	return net.IPNet{IP: net.ParseIP(ip).To4(), Mask: mask}
}
