package cni_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"

	reftypes "github.com/containernetworking/cni/pkg/types"

	"github.com/knit-cni/knit/pkg/cni"
)

func TestErrorJSONMatchesReference(t *testing.T) {
	for _, e := range []*cni.Error{
		cni.NewError(7, "m", "d"),
		cni.NewError(0, "", ""),
		cni.NewError(999, "internal", ""),
		cni.Errorf(11, "try again in %ds", 5),
	} {
		got, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal(reftypes.NewError(e.Code, e.Msg, e.Details))
		if string(got) != string(want) {
			t.Errorf("knit %s reference %s", got, want)
		}
		if e.Error() != reftypes.NewError(e.Code, e.Msg, e.Details).Error() {
			t.Errorf("Error(): knit %q reference %q", e.Error(), reftypes.NewError(e.Code, e.Msg, e.Details).Error())
		}
	}
	if got, _ := json.Marshal(cni.NewError(7, "m", "d")); string(got) != `{"code":7,"msg":"m","details":"d"}` {
		t.Errorf("got %s", got)
	}
	withVersion := &cni.Error{CNIVersion: "1.1.0", Code: 1, Msg: "m"}
	if got, _ := json.Marshal(withVersion); string(got) != `{"cniVersion":"1.1.0","code":1,"msg":"m"}` {
		t.Errorf("got %s", got)
	}
	if got := string(cni.NewError(7, "m", "d").JSON()); got != "{\n    \"code\": 7,\n    \"msg\": \"m\",\n    \"details\": \"d\"\n}" {
		t.Errorf("JSON(): %q", got)
	}
	// What a runtime reads back from a plugin's stdout.
	var back cni.Error
	if err := json.Unmarshal([]byte(`{"cniVersion":"1.0.0","code":11,"msg":"busy","details":"lock held"}`), &back); err != nil ||
		back.Code != 11 || back.Error() != "busy; lock held" {
		t.Errorf("decode: %+v %v", back, err)
	}
}

func TestAsErrorAndCode(t *testing.T) {
	inner := cni.NewError(cni.ErrTryAgainLater, "busy", "lock held")
	wrapped := fmt.Errorf("plugin type=%q failed (add): %w", "bridge", inner)
	if cni.Code(wrapped) != 11 || cni.Code(inner) != 11 {
		t.Errorf("Code: %d %d", cni.Code(wrapped), cni.Code(inner))
	}
	if cni.AsError(wrapped, 999) != inner {
		t.Error("AsError of a wrapped *Error is that error")
	}
	if cni.AsError(inner, 999) != inner {
		t.Error("AsError of an *Error is itself")
	}
	plain := errors.New("disk on fire")
	e := cni.AsError(plain, cni.ErrIOFailure)
	if e.Code != 5 || e.Msg != "disk on fire" || e.Details != "" {
		t.Errorf("AsError(plain): %+v", e)
	}
	if cni.Code(plain) != cni.ErrUnknown || cni.Code(nil) != cni.ErrUnknown {
		t.Error("Code of a non-CNI error is 0")
	}
	if cni.AsError(nil, 1) != nil {
		t.Error("AsError(nil) is nil")
	}
	// A *Error is usable with errors.As from the outside, too.
	var target *cni.Error
	if !errors.As(fmt.Errorf("x: %w", fmt.Errorf("y: %w", inner)), &target) || target.Msg != "busy" {
		t.Error("errors.As through two wraps")
	}
}

// The codes are the spec's numbers (and the reference's).
func TestErrorCodesMatchReference(t *testing.T) {
	pairs := [][2]uint{
		{cni.ErrUnknown, reftypes.ErrUnknown},
		{cni.ErrIncompatibleCNIVersion, reftypes.ErrIncompatibleCNIVersion},
		{cni.ErrUnsupportedField, reftypes.ErrUnsupportedField},
		{cni.ErrUnknownContainer, reftypes.ErrUnknownContainer},
		{cni.ErrInvalidEnvironmentVariables, reftypes.ErrInvalidEnvironmentVariables},
		{cni.ErrIOFailure, reftypes.ErrIOFailure},
		{cni.ErrDecodingFailure, reftypes.ErrDecodingFailure},
		{cni.ErrInvalidNetworkConfig, reftypes.ErrInvalidNetworkConfig},
		{cni.ErrInvalidNetNS, reftypes.ErrInvalidNetNS},
		{cni.ErrTryAgainLater, reftypes.ErrTryAgainLater},
		{cni.ErrPluginNotAvailable, reftypes.ErrPluginNotAvailable},
		{cni.ErrLimitedConnectivity, reftypes.ErrLimitedConnectivity},
		{cni.ErrInternal, reftypes.ErrInternal},
	}
	for i, p := range pairs {
		if p[0] != p[1] {
			t.Errorf("constant %d: knit %d reference %d", i, p[0], p[1])
		}
	}
}

func TestFirstError(t *testing.T) {
	if err := cni.FirstError(); err != nil {
		t.Errorf("FirstError() = %v", err)
	}
	if err := cni.FirstError(nil, nil); err != nil {
		t.Errorf("FirstError(nil, nil) = %v", err)
	}
	ipam := cni.NewError(cni.ErrTryAgainLater, "ipam busy", "lock held")
	if err := cni.FirstError(nil, ipam); err != ipam {
		t.Errorf("one error: %v, want it unchanged", err)
	}
	link := errors.New("cannot delete eth0")
	masq := cni.NewError(cni.ErrInternal, "cannot remove masquerading", "")
	err := cni.FirstError(ipam, nil, link, masq)
	e, ok := err.(*cni.Error)
	if !ok || e.Code != cni.ErrTryAgainLater || e.Msg != "ipam busy" ||
		e.Details != "lock held; also: cannot delete eth0; also: cannot remove masquerading" {
		t.Errorf("three errors: %#v", err)
	}
	if ipam.Details != "lock held" {
		t.Errorf("the first error was modified: %+v", ipam)
	}
	if e := cni.AsError(cni.FirstError(link, masq), 0); e.Code != cni.ErrInternal || e.Msg != "cannot delete eth0" || e.Details != "also: cannot remove masquerading" {
		t.Errorf("plain first error: %+v", e)
	}
}

// NetNSError gives code 4 and names the path, telling a missing namespace
// from one that cannot be opened.
func TestNetNSError(t *testing.T) {
	missing := cni.NetNSError("/run/netns/gone", fmt.Errorf("opening: %w", fs.ErrNotExist))
	if missing.Code != cni.ErrInvalidEnvironmentVariables || missing.Msg != `network namespace "/run/netns/gone" does not exist` || !strings.Contains(missing.Details, "opening") {
		t.Errorf("missing namespace: %+v", missing)
	}
	bad := cni.NetNSError("/tmp/x", errors.New("not a network namespace"))
	if bad.Code != cni.ErrInvalidEnvironmentVariables || bad.Msg != `cannot open network namespace "/tmp/x"` || bad.Details != "not a network namespace" {
		t.Errorf("unusable namespace: %+v", bad)
	}
}
