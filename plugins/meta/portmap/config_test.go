package portmap

import (
	"errors"
	"testing"

	"github.com/knit-cni/knit/pkg/cni"
)

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct {
		conf string
		code uint // 0: accepted
	}{
		{`{"name":"n","type":"portmap"}`, 0},
		{`{"name":"n","type":"portmap","backend":"iptables","markMasqBit":13,"conditionsV4":[]}`, 0},
		{`{"name":"n","type":"portmap","backend":"nftables","externalSetMarkChain":"X"}`, 0},
		{`{"name":"n","type":"portmap","backend":"ebpf"}`, cni.ErrInvalidNetworkConfig},
		{`{"name":"n","type":"portmap","markMasqBit":13,"externalSetMarkChain":"X"}`, cni.ErrInvalidNetworkConfig},
		{`{"name":"n","type":"portmap","markMasqBit":32}`, cni.ErrInvalidNetworkConfig},
		{`{"name":"n","type":"portmap","conditionsV4":["-s","1.2.3.4"]}`, cni.ErrUnsupportedField},
		{`{"name":"n","type":"portmap","conditionsV6":["ip6 saddr ::1"]}`, cni.ErrUnsupportedField},
		{`{"name":"n","type":"portmap","runtimeConfig":{"portMappings":[{"hostPort":0,"containerPort":80}]}}`, cni.ErrInvalidNetworkConfig},
		{`{"name":"n","type":"portmap","runtimeConfig":{"portMappings":[{"hostPort":80,"containerPort":70000}]}}`, cni.ErrInvalidNetworkConfig},
		{`{"name":"n","type":"portmap","runtimeConfig":{"portMappings":[{"hostPort":80,"containerPort":80,"protocol":"icmp"}]}}`, cni.ErrInvalidNetworkConfig},
		{`{"name":"n","type":"portmap","runtimeConfig":{"portMappings":[{"hostPort":80,"containerPort":80,"hostIP":"nope"}]}}`, cni.ErrInvalidNetworkConfig},
		{`{"name":"n","type":"portmap","runtimeConfig":{"portMappings":[{"hostPort":80,"containerPort":80},{"hostPort":80,"containerPort":81,"protocol":"TCP"}]}}`, cni.ErrInvalidNetworkConfig},
		{`{"name":"n","type":"portmap","runtimeConfig":{"portMappings":[{"hostPort":80,"containerPort":80,"protocol":"UDP","hostIP":"10.0.0.1"}]}}`, 0},
		{`{"name":"n","type":"portmap",`, cni.ErrDecodingFailure},
	} {
		c, err := parseConfig([]byte(tc.conf))
		var ce *cni.Error
		switch {
		case tc.code == 0 && err != nil:
			t.Errorf("%s: %v", tc.conf, err)
		case tc.code != 0 && (!errors.As(err, &ce) || ce.Code != tc.code):
			t.Errorf("%s: error %v, want code %d", tc.conf, err, tc.code)
		case tc.code == 0 && !c.options.SNAT:
			t.Errorf("%s: snat defaults to true", tc.conf)
		}
	}
	c, err := parseConfig([]byte(`{"name":"n","type":"portmap","snat":false,"runtimeConfig":{"portMappings":[{"hostPort":80,"containerPort":8080,"protocol":"UDP","hostIP":"::ffff:10.0.0.1"}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.options.SNAT || len(c.mappings) != 1 || c.mappings[0].Protocol != "udp" || c.mappings[0].HostIP.String() != "10.0.0.1" {
		t.Errorf("parsed %+v %+v", c.options, c.mappings)
	}
}
