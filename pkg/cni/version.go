package cni

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Spec versions.
const (
	Version010 = "0.1.0"
	Version020 = "0.2.0"
	Version030 = "0.3.0"
	Version031 = "0.3.1"
	Version040 = "0.4.0"
	Version100 = "1.0.0"
	Version110 = "1.1.0"

	// CurrentVersion is the newest specification version knit implements.
	CurrentVersion = Version110
)

// AllVersions lists every specification version knit implements, oldest first.
var AllVersions = []string{Version010, Version020, Version030, Version031, Version040, Version100, Version110}

// IsSupportedVersion reports whether v names a spec version knit implements.
// The empty string means 0.1.0 and is supported.
func IsSupportedVersion(v string) bool {
	if v == "" {
		return true
	}
	for _, s := range AllVersions {
		if s == v {
			return true
		}
	}
	return false
}

// ParseVersion parses "major[.minor[.micro]]" into its numeric parts. The empty
// string is 0.1.0. Missing parts are zero; pre-release suffixes are errors.
func ParseVersion(v string) (major, minor, micro int, err error) {
	if v == "" {
		return 0, 1, 0, nil
	}
	parts := strings.Split(v, ".")
	if len(parts) > 3 {
		return 0, 0, 0, fmt.Errorf("invalid version %q: too many parts", v)
	}
	nums := [3]int{}
	for i, p := range parts {
		n, perr := strconv.Atoi(p)
		if perr != nil || n < 0 {
			return 0, 0, 0, fmt.Errorf("invalid version %q: %q is not a number", v, p)
		}
		nums[i] = n
	}
	return nums[0], nums[1], nums[2], nil
}

// CompareVersions compares two versions numerically: -1 if a < b, 0 if equal,
// 1 if a > b. An unparsable version is an error.
func CompareVersions(a, b string) (int, error) {
	a1, a2, a3, err := ParseVersion(a)
	if err != nil {
		return 0, err
	}
	b1, b2, b3, err := ParseVersion(b)
	if err != nil {
		return 0, err
	}
	for _, d := range [][2]int{{a1, b1}, {a2, b2}, {a3, b3}} {
		if d[0] < d[1] {
			return -1, nil
		}
		if d[0] > d[1] {
			return 1, nil
		}
	}
	return 0, nil
}

// VersionAtLeast reports whether v >= min. An unparsable v is never at least min.
func VersionAtLeast(v, min string) bool {
	c, err := CompareVersions(v, min)
	return err == nil && c >= 0
}

// SelectVersion implements the conflist rule for cniVersion + cniVersions: the
// highest version listed that knit supports wins. Versions above
// CurrentVersion are dropped; an unparsable entry is an error.
func SelectVersion(cniVersion string, cniVersions []string) (string, error) {
	if len(cniVersions) == 0 {
		return cniVersion, nil
	}
	var cands []string
	for _, v := range cniVersions {
		if _, _, _, err := ParseVersion(v); err != nil {
			return "", fmt.Errorf("invalid version in cniVersions: %w", err)
		}
		if VersionAtLeast(CurrentVersion, v) {
			cands = append(cands, v)
		}
	}
	if cniVersion != "" {
		if _, _, _, err := ParseVersion(cniVersion); err != nil {
			return "", fmt.Errorf("invalid cniVersion: %w", err)
		}
		if VersionAtLeast(CurrentVersion, cniVersion) {
			cands = append(cands, cniVersion)
		}
	}
	if len(cands) == 0 {
		// As the reference: nothing usable listed leaves cniVersion as written.
		return cniVersion, nil
	}
	sort.SliceStable(cands, func(i, j int) bool {
		c, _ := CompareVersions(cands[i], cands[j])
		return c < 0
	})
	return cands[len(cands)-1], nil
}

// VersionInfo is the answer to the VERSION command.
type VersionInfo struct {
	CNIVersion        string   `json:"cniVersion"`
	SupportedVersions []string `json:"supportedVersions"`
}

// Supports reports whether v is in the supported list ("" counts as 0.1.0).
func (vi *VersionInfo) Supports(v string) bool {
	if v == "" {
		v = Version010
	}
	for _, s := range vi.SupportedVersions {
		if s == v {
			return true
		}
	}
	return false
}

// ParseVersionInfo decodes a VERSION answer. cniVersion must be present and
// non-empty. A 0.2.0 answer without supportedVersions (absent or empty) means
// [0.1.0, 0.2.0]; any other answer must list them. Errors are code 6.
func ParseVersionInfo(data []byte) (*VersionInfo, error) {
	var raw VersionInfo
	if err := jsonUnmarshal(data, &raw); err != nil {
		return nil, NewError(ErrDecodingFailure, "decoding version info", err.Error())
	}
	if raw.CNIVersion == "" {
		return nil, NewError(ErrDecodingFailure, "decoding version info", "missing field cniVersion")
	}
	if len(raw.SupportedVersions) == 0 {
		if raw.CNIVersion == Version020 {
			return &VersionInfo{CNIVersion: Version020, SupportedVersions: []string{Version010, Version020}}, nil
		}
		return nil, NewError(ErrDecodingFailure, "decoding version info", "missing field supportedVersions")
	}
	return &raw, nil
}
