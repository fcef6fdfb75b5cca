package cni_test

import (
	"strings"
	"testing"

	reftypes "github.com/containernetworking/cni/pkg/types"

	"github.com/knit-cni/knit/pkg/cni"
)

// refArgs is how a reference plugin declares the CNI_ARGS it knows.
type refArgs struct {
	reftypes.CommonArgs
	IP           reftypes.UnmarshallableString
	K8S_POD_NAME reftypes.UnmarshallableString //nolint:revive // the key's spelling
}

// LoadArgs accepts and rejects what the reference types.LoadArgs does, and
// gives the same values.
func TestLoadArgsMatchesReference(t *testing.T) {
	tests := []struct {
		in     string
		err    bool
		ip     string
		errMsg string
	}{
		{in: ""},
		{in: "IP=10.0.0.2", ip: "10.0.0.2"},
		{in: "IP=10.0.0.2/24;K8S_POD_NAME=p", ip: "10.0.0.2/24"},
		{in: "IgnoreUnknown=1;FOO=bar;IP=1", ip: "1"},
		{in: "FOO=bar;IgnoreUnknown=true", ip: ""},
		{in: "FOO=bar;IP=x;IgnoreUnknown=TRUE", ip: "x"},
		{in: "FOO=bar", err: true, errMsg: "ARGS: unknown args; [FOO]"},
		{in: "IgnoreUnknown=0;FOO=bar", err: true, errMsg: "unknown args"},
		{in: "IgnoreUnknown=false;IP=1", ip: "1"},
		{in: "IgnoreUnknown=1;IgnoreUnknown=0;FOO=1", err: true, errMsg: "unknown args"},
		{in: "IgnoreUnknown=yes", err: true, errMsg: "IgnoreUnknown"},
		{in: "ip=1", err: true, errMsg: "[ip]"},
		{in: "IP", err: true, errMsg: `ARGS: invalid pair; "IP"`},
		{in: "IP=a=b", err: true, errMsg: "invalid pair"},
		{in: "IP=1;", err: true, errMsg: `invalid pair; ""`},
		{in: ";IP=1", err: true, errMsg: "invalid pair"},
		{in: "=x;IgnoreUnknown=1"},
		{in: "=x", err: true, errMsg: "unknown args"},
		{in: "IP=", ip: ""},
		{in: "IP=1;IP=2", ip: "2"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var ref refArgs
			refErr := reftypes.LoadArgs(tt.in, &ref)
			got, err := cni.LoadArgs(tt.in, "IP", "K8S_POD_NAME")
			if (err != nil) != tt.err || (refErr != nil) != tt.err {
				t.Fatalf("knit %v, reference %v, want error %v", err, refErr, tt.err)
			}
			if tt.err {
				if cni.Code(err) != cni.ErrInvalidEnvironmentVariables || !strings.Contains(err.Error(), tt.errMsg) {
					t.Errorf("error %q code %d, want code 4 containing %q", err, cni.Code(err), tt.errMsg)
				}
				return
			}
			ip, _ := got.Get("IP")
			if ip != tt.ip || string(ref.IP) != tt.ip {
				t.Errorf("IP: knit %q reference %q want %q", ip, ref.IP, tt.ip)
			}
		})
	}
}

func TestParseAndFormatArgs(t *testing.T) {
	pairs, err := cni.ParseArgs("IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;=;X=")
	if err != nil {
		t.Fatal(err)
	}
	want := [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", "ns"}, {"K8S_POD_NAME", "p"}, {"", ""}, {"X", ""}}
	if len(pairs) != len(want) {
		t.Fatalf("got %q", pairs)
	}
	for i := range want {
		if pairs[i] != want[i] {
			t.Errorf("pair %d: %q want %q", i, pairs[i], want[i])
		}
	}
	if p, err := cni.ParseArgs(""); p != nil || err != nil {
		t.Errorf("empty: %v %v", p, err)
	}

	s, err := cni.FormatArgs([][2]string{{"IgnoreUnknown", "1"}, {"IP", "10.0.0.2/24"}, {"E", ""}})
	if err != nil || s != "IgnoreUnknown=1;IP=10.0.0.2/24;E=" {
		t.Errorf("FormatArgs: %q %v", s, err)
	}
	if s, err := cni.FormatArgs(nil); s != "" || err != nil {
		t.Errorf("FormatArgs(nil): %q %v", s, err)
	}
	for _, bad := range [][2]string{{"", "v"}, {"a;b", "v"}, {"a=b", "v"}, {"k", "x;y"}, {"k", "x=y"}} {
		_, err := cni.FormatArgs([][2]string{bad})
		if cni.Code(err) != cni.ErrInvalidEnvironmentVariables {
			t.Errorf("%q: %v", bad, err)
		}
	}
}
