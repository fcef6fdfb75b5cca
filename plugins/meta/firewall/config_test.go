package firewall

import (
	"errors"
	"testing"

	"github.com/knit-cni/knit/pkg/cni"
)

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct {
		conf string
		code uint
	}{
		{`{"name":"n","type":"firewall"}`, 0},
		{`{"name":"n","type":"firewall","backend":"iptables","iptablesAdminChainName":"ADMIN","ingressPolicy":"open"}`, 0},
		{`{"name":"n","type":"firewall","backend":"nftables","ingressPolicy":"same-bridge"}`, 0},
		{`{"name":"n","type":"firewall","backend":"firewalld"}`, cni.ErrUnsupportedField},
		{`{"name":"n","type":"firewall","backend":"pf"}`, cni.ErrInvalidNetworkConfig},
		{`{"name":"n","type":"firewall","ingressPolicy":"isolated"}`, cni.ErrUnsupportedField},
		{`{"name":"n","type":"firewall","ingressPolicy":"closed"}`, cni.ErrInvalidNetworkConfig},
		{`{"name":"n","type":"firewall"`, cni.ErrDecodingFailure},
	} {
		_, err := parseConfig([]byte(tc.conf))
		var ce *cni.Error
		switch {
		case tc.code == 0 && err != nil:
			t.Errorf("%s: %v", tc.conf, err)
		case tc.code != 0 && (!errors.As(err, &ce) || ce.Code != tc.code):
			t.Errorf("%s: error %v, want code %d", tc.conf, err, tc.code)
		}
	}
}
