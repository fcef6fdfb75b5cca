package cni_test

import (
	"strings"
	"testing"

	refversion "github.com/containernetworking/cni/pkg/version"

	"github.com/knit-cni/knit/pkg/cni"
)

func TestAllVersionsMatchReference(t *testing.T) {
	ref := refversion.All.SupportedVersions()
	if len(ref) != len(cni.AllVersions) {
		t.Fatalf("knit %v reference %v", cni.AllVersions, ref)
	}
	for i := range ref {
		if ref[i] != cni.AllVersions[i] {
			t.Errorf("knit %v reference %v", cni.AllVersions, ref)
		}
	}
	if cni.CurrentVersion != refversion.Current() {
		t.Errorf("current: knit %s reference %s", cni.CurrentVersion, refversion.Current())
	}
	for _, v := range []string{"", "0.1.0", "1.1.0"} {
		if !cni.IsSupportedVersion(v) {
			t.Errorf("%q not supported", v)
		}
	}
	for _, v := range []string{"1.2.0", "1.0", "0.3", "x"} {
		if cni.IsSupportedVersion(v) {
			t.Errorf("%q supported", v)
		}
	}
}

func TestParseVersionAndCompareMatchReference(t *testing.T) {
	vs := []string{"", "0.1.0", "0.2.0", "0.3", "0.3.1", "0.4.0", "1", "1.0.0", "1.1.0", "1.10.0", "2.0.0", "0.10"}
	for _, a := range vs {
		ma, mi, mc, err := cni.ParseVersion(a)
		ra, ri, rc, rerr := refversion.ParseVersion(a)
		if err != nil || rerr != nil || ma != ra || mi != ri || mc != rc {
			t.Errorf("ParseVersion(%q): knit %d.%d.%d %v reference %d.%d.%d %v", a, ma, mi, mc, err, ra, ri, rc, rerr)
		}
		for _, b := range vs {
			c, err := cni.CompareVersions(a, b)
			if err != nil {
				t.Fatal(err)
			}
			gt, _ := refversion.GreaterThan(a, b)
			ge, _ := refversion.GreaterThanOrEqualTo(a, b)
			if (c > 0) != gt || (c >= 0) != ge {
				t.Errorf("compare(%q, %q) = %d; reference gt %v ge %v", a, b, c, gt, ge)
			}
			if cni.VersionAtLeast(a, b) != ge {
				t.Errorf("VersionAtLeast(%q, %q)", a, b)
			}
		}
	}
	for _, bad := range []string{"1.0.0.0", "a", "1.x", "1.0.0-rc1", "1..0", "."} {
		if _, _, _, err := cni.ParseVersion(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
		if _, _, _, err := refversion.ParseVersion(bad); err == nil {
			t.Errorf("%q parsed by the reference", bad)
		}
		if cni.VersionAtLeast(bad, "0.1.0") {
			t.Errorf("VersionAtLeast(%q)", bad)
		}
	}
	// knit also refuses negative parts, which the reference's Atoi lets by.
	if _, _, _, err := cni.ParseVersion("1.-1.0"); err == nil {
		t.Error("negative part parsed")
	}
}

func TestParseVersionInfoMatchesReference(t *testing.T) {
	tests := []struct {
		json string
		want []string
		err  string
	}{
		{`{"cniVersion":"1.1.0","supportedVersions":["0.4.0","1.0.0"]}`, []string{"0.4.0", "1.0.0"}, ""},
		{`{"cniVersion":"0.2.0"}`, []string{"0.1.0", "0.2.0"}, ""},
		{`{"cniVersion":"0.2.0","supportedVersions":[]}`, []string{"0.1.0", "0.2.0"}, ""},
		{`{"cniVersion":"0.2.0","supportedVersions":["0.2.0"]}`, []string{"0.2.0"}, ""},
		{`{"cniVersion":"1.0.0"}`, nil, "decoding version info; missing field supportedVersions"},
		{`{"cniVersion":"1.0.0","supportedVersions":[]}`, nil, "missing field supportedVersions"},
		{`{"supportedVersions":["1.0.0"]}`, nil, "decoding version info; missing field cniVersion"},
		{`{"cniVersion":"","supportedVersions":["1.0.0"]}`, nil, "missing field cniVersion"},
		{`{"cniVersion":`, nil, "decoding version info"},
		{`{"cniVersion":1}`, nil, "decoding version info"},
	}
	dec := &refversion.PluginDecoder{}
	for _, tt := range tests {
		vi, err := cni.ParseVersionInfo([]byte(tt.json))
		ref, refErr := dec.Decode([]byte(tt.json))
		if tt.err != "" {
			if err == nil || refErr == nil {
				t.Errorf("%s: knit %v reference %v, want errors", tt.json, err, refErr)
				continue
			}
			if cni.Code(err) != cni.ErrDecodingFailure || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: %q (code %d), want it to contain %q", tt.json, err, cni.Code(err), tt.err)
			}
			continue
		}
		if err != nil || refErr != nil {
			t.Fatalf("%s: knit %v reference %v", tt.json, err, refErr)
		}
		if len(vi.SupportedVersions) != len(tt.want) || len(ref.SupportedVersions()) != len(tt.want) {
			t.Errorf("%s: knit %v reference %v want %v", tt.json, vi.SupportedVersions, ref.SupportedVersions(), tt.want)
			continue
		}
		for i := range tt.want {
			if vi.SupportedVersions[i] != tt.want[i] || ref.SupportedVersions()[i] != tt.want[i] {
				t.Errorf("%s: knit %v reference %v", tt.json, vi.SupportedVersions, ref.SupportedVersions())
			}
		}
	}
	vi := &cni.VersionInfo{SupportedVersions: []string{"0.1.0", "1.0.0"}}
	if !vi.Supports("") || !vi.Supports("1.0.0") || vi.Supports("1.1.0") || vi.Supports("1.0") {
		t.Error("Supports")
	}
}

func TestSelectVersion(t *testing.T) {
	tests := []struct {
		v    string
		vs   []string
		want string
		err  bool
	}{
		{"0.3.1", []string{"0.4.0", "1.0.0", "9.9.9"}, "1.0.0", false},
		{"1.0.0", nil, "1.0.0", false},
		{"garbage", nil, "garbage", false}, // not looked at without cniVersions (ParseConfigList checks it)
		{"9.9.9", []string{"9.9.8"}, "9.9.9", false},
		{"", []string{"2.0.0"}, "", false},
		{"", []string{"0.2.0", "1.1.0", "0.4.0"}, "1.1.0", false},
		{"x", []string{"1.0.0"}, "", true},
		{"1.0.0", []string{"1.0.0", "y"}, "", true},
	}
	for _, tt := range tests {
		got, err := cni.SelectVersion(tt.v, tt.vs)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("SelectVersion(%q, %q) = %q, %v; want %q (error %v)", tt.v, tt.vs, got, err, tt.want, tt.err)
		}
	}
}
