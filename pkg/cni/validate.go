package cni

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"
)

var idRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`)

// ValidateContainerID checks a container ID: empty is code 3, bad
// characters code 4.
func ValidateContainerID(id string) *Error {
	if id == "" {
		return NewError(ErrUnknownContainer, "missing containerID", "")
	}
	if !idRE.MatchString(id) {
		return NewError(ErrInvalidEnvironmentVariables, "invalid characters in containerID", id)
	}
	return nil
}

// ValidateNetworkName checks a network name (code 7).
func ValidateNetworkName(name string) *Error {
	if name == "" {
		return NewError(ErrInvalidNetworkConfig, "missing network name:", "")
	}
	if !idRE.MatchString(name) {
		return NewError(ErrInvalidNetworkConfig, "invalid characters found in network name", name)
	}
	return nil
}

// ValidateInterfaceName checks an interface name (code 4): non-empty, at most
// 15 bytes, not "." or "..", no '/', ':' or whitespace.
func ValidateInterfaceName(name string) *Error {
	if name == "" {
		return NewError(ErrInvalidEnvironmentVariables, "interface name is empty", "")
	}
	if len(name) > 15 {
		return NewError(ErrInvalidEnvironmentVariables, "interface name is too long", "interface name should be less than 16 characters")
	}
	if name == "." || name == ".." {
		return NewError(ErrInvalidEnvironmentVariables, "interface name is . or ..", "")
	}
	for _, r := range name {
		if r == '/' || r == ':' || unicode.IsSpace(r) {
			return NewError(ErrInvalidEnvironmentVariables, "interface name contains / or : or whitespace characters", "")
		}
	}
	return nil
}

// ValidatePluginType checks a plugin type: it names a binary on CNI_PATH, so
// it must be non-empty and hold no path separator and not be "." or "..".
func ValidatePluginType(t string) *Error {
	if t == "" {
		return NewError(ErrInvalidNetworkConfig, "no plugin name provided", "")
	}
	if strings.ContainsAny(t, `/\`) || t == "." || t == ".." {
		return NewError(ErrInvalidNetworkConfig, fmt.Sprintf("invalid plugin name: %s", t),
			"a plugin type is a file name looked up along CNI_PATH and must not contain a path separator")
	}
	return nil
}
