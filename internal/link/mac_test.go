package link

import (
	"testing"

	"github.com/knit-cni/knit/pkg/cni"
)

func TestContainerMACPrecedence(t *testing.T) {
	const a, b, c = "02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c"
	cases := []struct {
		base, args string
		overrides  []string
		want       string
	}{
		{"", "", nil, ""},
		{a, "", nil, a},
		{a, "MAC=" + b, nil, b},
		{a, "MAC=", nil, a},
		{a, "MAC=" + b, []string{c}, c},
		{a, "MAC=" + b, []string{c, ""}, c},
		{"", "IgnoreUnknown=1;X=y", []string{"", b}, b},
	}
	for _, tc := range cases {
		mac, err := ContainerMAC(tc.base, tc.args, []string{"MAC"}, tc.overrides...)
		if err != nil {
			t.Fatalf("%+v: %v", tc, err)
		}
		got := ""
		if mac != nil {
			got = mac.String()
		}
		if got != tc.want {
			t.Errorf("%+v: got %q, want %q", tc, got, tc.want)
		}
	}
	if _, err := ContainerMAC("", "X=y", []string{"MAC"}); cni.Code(err) != cni.ErrInvalidEnvironmentVariables {
		t.Errorf("unknown CNI_ARGS key: err %v, want code 4", err)
	}
	for _, bad := range []string{"01:00:00:00:00:01", "zz", "02:00:00:00:00:00:01"} {
		if _, err := ContainerMAC(bad, "", nil); cni.Code(err) != cni.ErrInvalidNetworkConfig {
			t.Errorf("MAC %q: err %v, want code 7", bad, err)
		}
	}
}
