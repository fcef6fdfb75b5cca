package nft

import (
	"strings"
	"testing"

	"github.com/knit-cni/knit/pkg/cni"
)

func TestOwnerTagRoundTrip(t *testing.T) {
	o := Owner{Network: "net-1.a", ContainerID: "c0ffee_1", IfName: "eth0"}
	if got := o.String(); got != "net-1.a/c0ffee_1/eth0" {
		t.Errorf("String() = %q", got)
	}
	back, ok := ParseOwnerTag(OwnerTag(o))
	if !ok || back != o {
		t.Errorf("ParseOwnerTag(OwnerTag(%v)) = %v, %v", o, back, ok)
	}
	n, ok := ParseNetworkTag(NetworkTag("mynet"))
	if !ok || n != "mynet" {
		t.Errorf("ParseNetworkTag = %q, %v", n, ok)
	}
	if _, ok := ParseNetworkTag(OwnerTag(o)); ok {
		t.Error("an owner tag parsed as a network tag")
	}
	if _, ok := ParseOwnerTag(NetworkTag("mynet")); ok {
		t.Error("a network tag parsed as an owner tag")
	}
}

func TestParseOwnerTagRejectsGarbage(t *testing.T) {
	for _, b := range [][]byte{nil, {0}, {0, 200, 'a'}, {1, 2, 'a', 'b'}, {0, 4, 'a', '/', 'b', 0}} {
		if o, ok := ParseOwnerTag(b); ok {
			t.Errorf("ParseOwnerTag(%v) = %v, want not ok", b, o)
		}
	}
	for _, s := range []string{"", "a/b", "a/b/c/d", "/b/c", "a//c"} {
		if _, err := ParseOwner(s); err == nil {
			t.Errorf("ParseOwner(%q) succeeded", s)
		}
	}
}

func TestOwnerValidate(t *testing.T) {
	good := Owner{Network: "n", ContainerID: "c", IfName: "eth0"}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		o    Owner
		code uint
	}{
		{Owner{ContainerID: "c", IfName: "eth0"}, cni.ErrInvalidNetworkConfig},
		{Owner{Network: "a/b", ContainerID: "c", IfName: "eth0"}, cni.ErrInvalidNetworkConfig},
		{Owner{Network: "n", IfName: "eth0"}, cni.ErrUnknownContainer},
		{Owner{Network: "n", ContainerID: "c/d", IfName: "eth0"}, cni.ErrInvalidEnvironmentVariables},
		{Owner{Network: "n", ContainerID: "c", IfName: "e/0"}, cni.ErrInvalidEnvironmentVariables},
		{Owner{Network: strings.Repeat("n", 240), ContainerID: strings.Repeat("c", 64), IfName: "eth0"}, cni.ErrInvalidNetworkConfig},
	} {
		err := tc.o.Validate()
		if err == nil || cni.Code(err) != tc.code {
			t.Errorf("Validate(%+v) = %v (code %d), want code %d", tc.o, err, cni.Code(err), tc.code)
		}
	}
}
