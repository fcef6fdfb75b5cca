package cni_test

import (
	"strings"
	"testing"

	refutils "github.com/containernetworking/cni/pkg/utils"

	"github.com/knit-cni/knit/pkg/cni"
)

// sameError compares knit's *cni.Error with the reference's *types.Error
// field by field (both nil is equal).
func sameError(t *testing.T, what string, got *cni.Error, ref interface{ Error() string }, refCode uint, refMsg, refDetails string, refNil bool) {
	t.Helper()
	if refNil {
		if got != nil {
			t.Errorf("%s: knit %v, reference accepts", what, got)
		}
		return
	}
	if got == nil {
		t.Errorf("%s: knit accepts, reference %v", what, ref)
		return
	}
	if got.Code != refCode || got.Msg != refMsg || got.Details != refDetails {
		t.Errorf("%s: knit {%d %q %q}, reference {%d %q %q}", what, got.Code, got.Msg, got.Details, refCode, refMsg, refDetails)
	}
}

func TestValidateContainerIDMatchesReference(t *testing.T) {
	for _, id := range []string{"", "-x", "x%y", "_x", ".x", "x", "abc123_.-X", "a b", "a\n", "ä", "aä", "x-", "Z.9", strings.Repeat("a", 300), "0"} {
		got := cni.ValidateContainerID(id)
		ref := refutils.ValidateContainerID(id)
		if ref == nil {
			sameError(t, id, got, nil, 0, "", "", true)
			continue
		}
		sameError(t, id, got, ref, ref.Code, ref.Msg, ref.Details, false)
	}
	// The codes spelled out (checklist §11 #19).
	for id, code := range map[string]uint{"": 3, "-x": 4, "x%y": 4} {
		if e := cni.ValidateContainerID(id); e == nil || e.Code != code {
			t.Errorf("%q: %v, want code %d", id, e, code)
		}
	}
}

// FuzzValidateIDMatchesReference: container IDs and network names are
// accepted exactly when the reference accepts them.
func FuzzValidateIDMatchesReference(f *testing.F) {
	for _, s := range []string{"", "a", "-a", "a-", "a\n", "ä", "a.b_c-D9", "a\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, ref := cni.ValidateContainerID(s) == nil, refutils.ValidateContainerID(s) == nil; got != ref {
			t.Errorf("ValidateContainerID(%q) accepts=%v, reference %v", s, got, ref)
		}
		if got, ref := cni.ValidateNetworkName(s) == nil, refutils.ValidateNetworkName(s) == nil; got != ref {
			t.Errorf("ValidateNetworkName(%q) accepts=%v, reference %v", s, got, ref)
		}
	})
}

func TestValidateNetworkNameMatchesReference(t *testing.T) {
	for _, n := range []string{"", "_n", "n", "my-net.1_x", "a/b", "-n", "n\n", "ñ"} {
		got := cni.ValidateNetworkName(n)
		ref := refutils.ValidateNetworkName(n)
		if ref == nil {
			sameError(t, n, got, nil, 0, "", "", true)
			continue
		}
		sameError(t, n, got, ref, ref.Code, ref.Msg, ref.Details, false)
	}
	if e := cni.ValidateNetworkName("_n"); e == nil || e.Code != 7 {
		t.Errorf("_n: %v", e)
	}
}

func TestValidateInterfaceNameMatchesReference(t *testing.T) {
	names := []string{
		"", ".", "..", "a b", "a:b", "a/b", "a\tb", "a\u00a0b", "a\u2003b",
		strings.Repeat("x", 16), strings.Repeat("x", 15), "eth0", "...", ".a",
		"ééééééé", "éééééééé", // 14 and 16 bytes: length counts bytes, not characters
		"\xff\xfe", "veth-1.2_x",
	}
	for _, n := range names {
		got := cni.ValidateInterfaceName(n)
		ref := refutils.ValidateInterfaceName(n)
		if ref == nil {
			sameError(t, n, got, nil, 0, "", "", true)
			continue
		}
		sameError(t, n, got, ref, ref.Code, ref.Msg, ref.Details, false)
		if got != nil && got.Code != cni.ErrInvalidEnvironmentVariables {
			t.Errorf("%q: code %d", n, got.Code)
		}
	}
	if e := cni.ValidateInterfaceName(strings.Repeat("x", 16)); e == nil || e.Error() != "interface name is too long; interface name should be less than 16 characters" {
		t.Errorf("16 bytes: %v", e)
	}
	if e := cni.ValidateInterfaceName(strings.Repeat("x", 15)); e != nil {
		t.Errorf("15 bytes: %v", e)
	}
}

func TestValidatePluginType(t *testing.T) {
	for _, ok := range []string{"bridge", "host-local", "a..b", "x.y", "...", "é"} {
		if e := cni.ValidatePluginType(ok); e != nil {
			t.Errorf("%q: %v", ok, e)
		}
	}
	for _, bad := range []string{"", ".", "..", "a/b", `a\b`, "/bin/sh", "../x", `..\x`} {
		e := cni.ValidatePluginType(bad)
		if e == nil || e.Code != cni.ErrInvalidNetworkConfig {
			t.Errorf("%q: %v", bad, e)
		}
	}
}
