package sysctl

import (
	"os"
	"strings"
	"testing"

	"github.com/knit-cni/knit/internal/netns"
	"github.com/knit-cni/knit/internal/nstest"
	"golang.org/x/sys/unix"
)

// forwardingOn (netlink) agrees with /proc/sys in a fresh namespace, off and
// on, and EnableForwarding turns forwarding on in the real tree.
func TestForwardingOnMatchesProc(t *testing.T) {
	ns := nstest.New(t, "sf")
	err := netns.Do(ns, func() error {
		for _, tc := range []struct {
			family uint8
			key    string
		}{{unix.AF_INET, "net/ipv4/ip_forward"}, {unix.AF_INET6, "net/ipv6/conf/all/forwarding"}} {
			for _, v := range []string{"0", "1", "0"} {
				if err := os.WriteFile("/proc/sys/"+tc.key, []byte(v), 0o644); err != nil {
					if tc.family == unix.AF_INET6 && os.IsNotExist(err) {
						t.Log("no IPv6 here")
						break
					}
					return err
				}
				on, err := forwardingOn(tc.family)
				if err != nil {
					return err
				}
				if on != (v == "1") {
					t.Errorf("%s=%s but forwardingOn(%d) = %v", tc.key, v, tc.family, on)
				}
			}
		}
		if err := EnableForwarding(true, true); err != nil {
			return err
		}
		for _, k := range []string{"net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding"} {
			b, err := os.ReadFile("/proc/sys/" + k)
			if err == nil && strings.TrimSpace(string(b)) != "1" {
				t.Errorf("after EnableForwarding, %s = %s", k, b)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
