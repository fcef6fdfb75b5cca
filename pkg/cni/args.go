package cni

import (
	"fmt"
	"strings"
)

// ParseArgs parses CNI_ARGS ("K1=V1;K2=V2") into ordered pairs. An empty
// string is no pairs. A pair without exactly one '=' is an error.
func ParseArgs(s string) ([][2]string, error) {
	if s == "" {
		return nil, nil
	}
	var out [][2]string
	for _, item := range strings.Split(s, ";") {
		kv := strings.Split(item, "=")
		if len(kv) != 2 {
			return nil, NewError(ErrInvalidEnvironmentVariables, "ARGS: invalid pair", fmt.Sprintf("%q", item))
		}
		out = append(out, [2]string{kv[0], kv[1]})
	}
	return out, nil
}

// FormatArgs joins pairs into the CNI_ARGS form. Keys or values holding ';'
// or '=' cannot be represented and are an error.
func FormatArgs(pairs [][2]string) (string, error) {
	parts := make([]string, 0, len(pairs))
	for _, p := range pairs {
		if p[0] == "" || strings.ContainsAny(p[0], ";=") || strings.ContainsAny(p[1], ";=") {
			return "", NewError(ErrInvalidEnvironmentVariables, "invalid CNI_ARGS pair",
				fmt.Sprintf("%q=%q: keys must be non-empty and neither may contain ';' or '='", p[0], p[1]))
		}
		parts = append(parts, p[0]+"="+p[1])
	}
	return strings.Join(parts, ";"), nil
}

// Args is CNI_ARGS as a lookup, with the IgnoreUnknown convention.
type Args struct {
	Pairs [][2]string
}

// LoadArgs parses CNI_ARGS and checks every key is one of known (compared
// exactly), unless IgnoreUnknown is set to a true value (1/true).
func LoadArgs(s string, known ...string) (*Args, error) {
	pairs, err := ParseArgs(s)
	if err != nil {
		return nil, err
	}
	a := &Args{Pairs: pairs}
	ignore := false
	if v, ok := a.Get("IgnoreUnknown"); ok {
		switch strings.ToLower(v) {
		case "1", "true":
			ignore = true
		case "0", "false":
		default:
			return nil, NewError(ErrInvalidEnvironmentVariables, "ARGS: invalid value for IgnoreUnknown", fmt.Sprintf("%q is not 1/true/0/false", v))
		}
	}
	if !ignore {
		var unknown []string
	outer:
		for _, p := range pairs {
			if p[0] == "IgnoreUnknown" {
				continue
			}
			for _, k := range known {
				if p[0] == k {
					continue outer
				}
			}
			unknown = append(unknown, p[0])
		}
		if len(unknown) > 0 {
			return nil, NewError(ErrInvalidEnvironmentVariables, "ARGS: unknown args", fmt.Sprintf("%v (set IgnoreUnknown=1 to allow them)", unknown))
		}
	}
	return a, nil
}

// Get returns the last value of key.
func (a *Args) Get(key string) (string, bool) {
	val, found := "", false
	for _, p := range a.Pairs {
		if p[0] == key {
			val, found = p[1], true
		}
	}
	return val, found
}
