package cni

import (
	"fmt"
	"strings"
	"unicode"
)

// validID reports whether s is a valid container ID or network name: an
// ASCII letter or digit, then letters, digits, '_', '.' or '-'. (A loop,
// not a regexp: this runs in every plugin exec, and a package-level
// regexp would be compiled at every plugin start-up.)
func validID(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case i > 0 && (c == '_' || c == '.' || c == '-'):
		default:
			return false
		}
	}
	return s != ""
}

// ValidateContainerID checks a container ID: empty is code 3, bad
// characters code 4.
func ValidateContainerID(id string) *Error {
	if id == "" {
		return NewError(ErrUnknownContainer, "missing containerID", "")
	}
	if !validID(id) {
		return NewError(ErrInvalidEnvironmentVariables, "invalid characters in containerID", id)
	}
	return nil
}

// ValidateNetworkName checks a network name (code 7).
func ValidateNetworkName(name string) *Error {
	if name == "" {
		return NewError(ErrInvalidNetworkConfig, "missing network name:", "")
	}
	if !validID(name) {
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
