package hostlocal

import (
	"strings"
	"testing"

	"github.com/knit-cni/knit/pkg/cni"
)

func TestLoadConfig(t *testing.T) {
	c, err := LoadConfig([]byte(`{"cniVersion":"1.0.0","name":"n","ipam":{"type":"host-local",
		"subnet":"10.0.0.0/24","rangeStart":"10.0.0.10","rangeEnd":"10.0.0.20","gateway":"10.0.0.254",
		"ranges":[[{"subnet":"fd00::/64"}],[{"subnet":"10.1.0.0/24"},{"subnet":"10.2.0.0/24"}]]},
		"runtimeConfig":{"ipRanges":[[{"subnet":"192.168.0.0/16"}]]}}`), "")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range c.Sets {
		got = append(got, s.String())
	}
	want := "192.168.0.1-192.168.255.254|10.0.0.10-10.0.0.20|fd00::1-fd00::ffff:ffff:ffff:ffff|10.1.0.1-10.1.0.254,10.2.0.1-10.2.0.254"
	if strings.Join(got, "|") != want {
		t.Errorf("sets %s", strings.Join(got, "|"))
	}
	if c.DataDir != DefaultDataDir || c.Sets[1][0].Gateway.String() != "10.0.0.254" {
		t.Errorf("defaults: %+v", c)
	}
}

func TestLoadConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		conf, args string
		code       uint
		want       string
	}{
		{`{"cniVersion":"1.0.0","name":"n"}`, "", 7, `missing "ipam"`},
		{`{"cniVersion":"1.0.0","name":"n","ipam":{"type":"host-local"}}`, "", 7, "no IP ranges specified"},
		{`{"cniVersion":"1.0.0","name":"n","ipam":{"subnet":"10.0.0.1/24"}}`, "", 7, "range set 0: range 0: \"subnet\": 10.0.0.1/24 has host bits set"},
		{`{"cniVersion":"1.0.0","name":"n","ipam":{"ranges":[[{"subnet":"10.0.0.0/24"}],[{"subnet":"nope"}]]}}`, "", 7, `ipam.ranges[1][0]: "subnet": "nope" is not a CIDR`},
		{`{"cniVersion":"1.0.0","name":"n","ipam":{"ranges":[[{"subnet":"10.0.0.0/31"}]]}}`, "", 7, "too small"},
		{`{"cniVersion":"1.0.0","name":"n","ipam":{"ranges":[[{"subnet":"10.0.0.0/24","rangeStart":"10.0.1.5"}]]}}`, "", 7, `"rangeStart": 10.0.1.5 is not in subnet 10.0.0.0/24`},
		{`{"cniVersion":"1.0.0","name":"n","ipam":{"ranges":[[{"subnet":"10.0.0.0/16"}],[{"subnet":"10.0.5.0/24"}]]}}`, "", 7, "range set 0 (10.0.0.1-10.0.255.254) overlaps with range set 1"},
		{`{"cniVersion":"1.0.0","name":"n","ipam":{"ranges":[[{"subnet":"10.0.0.0/24"},{"subnet":"10.0.0.0/25"}]]}}`, "", 7, "overlaps with range 1"},
		{`{"cniVersion":"0.2.0","name":"n","ipam":{"ranges":[[{"subnet":"10.0.0.0/24"}],[{"subnet":"10.1.0.0/24"}]]}}`, "", 7, "cniVersion 0.2.0 does not support more than one address per IP family"},
		{`{"cniVersion":"1.0.0","name":"n","ipam":{"subnet":"10.0.0.0/24","routes":[{"gw":"10.0.0.1"}]}}`, "", 7, ""},
		{`{"cniVersion":"1.0.0","name":"n","ipam":{"subnet":"10.0.0.0/24"}}`, "IP", 4, "invalid pair"},
		{`{"cniVersion":"1.0.0","name":"n","ipam":{"subnet":"10.0.0.0/24"},"runtimeConfig":{"ipRanges":[[{"subnet":"10.0.0.0/28"}]]}}`, "", 7, "overlaps"},
		{`not json`, "", 6, "cannot decode"},
	} {
		_, err := LoadConfig([]byte(tc.conf), tc.args)
		if err == nil {
			t.Errorf("%s: accepted", tc.conf)
			continue
		}
		if cni.Code(err) != tc.code || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %d %q, want %d containing %q", tc.conf, cni.Code(err), err, tc.code, tc.want)
		}
	}
	// One v4 and one v6 set is fine below 0.3.0.
	if _, err := LoadConfig([]byte(`{"cniVersion":"0.2.0","name":"n","ipam":{"ranges":[[{"subnet":"10.0.0.0/24"}],[{"subnet":"fd00::/64"}]]}}`), ""); err != nil {
		t.Errorf("0.2.0 dual stack: %v", err)
	}
}
