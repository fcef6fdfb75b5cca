package cni

import (
	"encoding/json"
	"fmt"
	"strings"
)

// NetConf is the part of a plugin's stdin configuration every plugin shares.
// Plugins embed it in their own config struct.
type NetConf struct {
	CNIVersion    string          `json:"cniVersion,omitempty"`
	Name          string          `json:"name,omitempty"`
	Type          string          `json:"type,omitempty"`
	Capabilities  map[string]bool `json:"capabilities,omitempty"`
	IPAM          IPAMConf        `json:"ipam,omitempty"`
	DNS           DNS             `json:"dns,omitempty"`
	RawPrevResult json.RawMessage `json:"prevResult,omitempty"`
	// ValidAttachments is cni.dev/valid-attachments (GC), falling back to the
	// older cni.dev/attachments; see Attachments.
	ValidAttachments  []GCAttachment `json:"cni.dev/valid-attachments,omitempty"`
	LegacyAttachments []GCAttachment `json:"cni.dev/attachments,omitempty"`
}

// IPAMConf is the ipam section: only its type is common to all IPAM plugins.
type IPAMConf struct {
	Type string `json:"type,omitempty"`
}

// GCAttachment names one attachment a GC must keep.
type GCAttachment struct {
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifname"`
}

// Attachments returns the attachments a GC must keep: cni.dev/valid-attachments,
// or the older cni.dev/attachments when only that is present.
func (c *NetConf) Attachments() []GCAttachment {
	if c.ValidAttachments != nil {
		return c.ValidAttachments
	}
	return c.LegacyAttachments
}

// Bool is a boolean that also accepts the strings "true" and "false" in any
// case, as the reference does for disableCheck and disableGC. JSON null and
// any other value are errors.
type Bool bool

// UnmarshalJSON accepts true, false, "true" and "false" (any case).
func (b *Bool) UnmarshalJSON(data []byte) error {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	switch x := v.(type) {
	case bool:
		*b = Bool(x)
		return nil
	case string:
		switch strings.ToLower(x) {
		case "true":
			*b = true
			return nil
		case "false":
			*b = false
			return nil
		}
		return fmt.Errorf("invalid value %q: use true or false", x)
	}
	return fmt.Errorf("invalid value %s: use true or false", data)
}

// PluginConfig is one plugin object of a network configuration list: its
// parsed common fields and its exact bytes, passed through to the plugin.
type PluginConfig struct {
	Network NetConf
	Bytes   []byte
}

// NetworkConfigList is a parsed network configuration (a "conflist").
type NetworkConfigList struct {
	Name                   string
	CNIVersion             string // the selected version (cniVersion ∪ cniVersions)
	DisableCheck           bool
	DisableGC              bool
	LoadOnlyInlinedPlugins bool
	Plugins                []*PluginConfig
	Bytes                  []byte // the list's own file bytes (cached as "config")
}

// ParsePluginConfig parses one plugin object. It must be a JSON object with a
// valid type (and a valid ipam.type, if any); a prevResult in it must be an
// object. Errors are code 6 (not decodable) or 7 (invalid).
func ParsePluginConfig(data []byte) (*PluginConfig, error) {
	var nc NetConf
	if err := json.Unmarshal(data, &nc); err != nil {
		return nil, NewError(ErrDecodingFailure, "error parsing plugin configuration", err.Error())
	}
	if err := decodableAsAny(data); err != nil {
		return nil, NewError(ErrDecodingFailure, "error parsing plugin configuration", err.Error())
	}
	if len(nc.RawPrevResult) > 0 && !isJSONObjectOrNull(nc.RawPrevResult) {
		return nil, NewError(ErrDecodingFailure, "error parsing plugin configuration", "prevResult must be a JSON object")
	}
	if nc.Type == "" {
		return nil, NewError(ErrInvalidNetworkConfig, "error parsing plugin configuration", "missing 'type'")
	}
	if err := ValidatePluginType(nc.Type); err != nil {
		return nil, err
	}
	if nc.IPAM.Type != "" {
		if err := ValidatePluginType(nc.IPAM.Type); err != nil {
			return nil, err
		}
	}
	return &PluginConfig{Network: nc, Bytes: append([]byte(nil), data...)}, nil
}

// ParseConfigList parses a conflist. Top-level keys are matched exactly (as
// the reference does; plugin objects are decoded case-insensitively like any
// Go struct). The name must be valid, cniVersion (and every cniVersions entry)
// a parsable version; the selected version is the highest of cniVersion ∪
// cniVersions not above CurrentVersion (see SelectVersion).
//
// Plugins from the network's subdirectory are not loaded here (see
// runtime.LoadConfList); a list without a "plugins" key therefore comes back
// with no plugins unless loadOnlyInlinedPlugins is set, which makes it an
// error. An empty "plugins" array is always an error.
func ParseConfigList(data []byte) (*NetworkConfigList, error) {
	fail := func(code uint, format string, args ...any) (*NetworkConfigList, error) {
		return nil, NewError(code, "error parsing configuration list", fmt.Sprintf(format, args...))
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return fail(ErrDecodingFailure, "%v", err)
	}
	if top == nil {
		return fail(ErrDecodingFailure, "the configuration list must be a JSON object")
	}
	if err := decodableAsAny(data); err != nil {
		return fail(ErrDecodingFailure, "%v", err)
	}
	var (
		name, cniVersion                     string
		cniVersions                          []string
		disableCheck, disableGC, onlyInlined Bool
		plugins                              []json.RawMessage
	)
	fields := []struct {
		key string
		dst any
	}{
		{"name", &name}, {"cniVersion", &cniVersion}, {"cniVersions", &cniVersions},
		{"disableCheck", &disableCheck}, {"disableGC", &disableGC},
		{"loadOnlyInlinedPlugins", &onlyInlined}, {"plugins", &plugins},
	}
	for _, f := range fields {
		raw, ok := top[f.key]
		if !ok {
			continue
		}
		if string(raw) == "null" {
			return fail(ErrDecodingFailure, "%s must not be null", f.key)
		}
		if err := json.Unmarshal(raw, f.dst); err != nil {
			return fail(ErrDecodingFailure, "%s: %v", f.key, err)
		}
	}
	if _, ok := top["name"]; !ok {
		return fail(ErrInvalidNetworkConfig, "no name")
	}
	if err := ValidateNetworkName(name); err != nil {
		return nil, err
	}
	if _, _, _, err := ParseVersion(cniVersion); err != nil {
		return fail(ErrInvalidNetworkConfig, "invalid cniVersion: %v", err)
	}
	_, hasPlugins := top["plugins"]
	if bool(onlyInlined) && !hasPlugins {
		return fail(ErrInvalidNetworkConfig, "loadOnlyInlinedPlugins is true but there is no 'plugins' key")
	}
	if hasPlugins && len(plugins) == 0 {
		return fail(ErrInvalidNetworkConfig, "no plugins in list")
	}
	v, err := SelectVersion(cniVersion, cniVersions)
	if err != nil {
		return fail(ErrInvalidNetworkConfig, "%v", err)
	}
	list := &NetworkConfigList{
		Name:                   name,
		CNIVersion:             v,
		DisableCheck:           bool(disableCheck),
		DisableGC:              bool(disableGC),
		LoadOnlyInlinedPlugins: bool(onlyInlined),
		Bytes:                  append([]byte(nil), data...),
	}
	for i, p := range plugins {
		pc, err := ParsePluginConfig(p)
		if err != nil {
			e := AsError(err, ErrInvalidNetworkConfig)
			return nil, &Error{Code: e.Code, Msg: fmt.Sprintf("plugin %d: %s", i, e.Msg), Details: e.Details}
		}
		list.Plugins = append(list.Plugins, pc)
	}
	return list, nil
}

// decodableAsAny checks data decodes as generic JSON, as the reference
// library decodes configs (so, e.g., a number too large for a float64, which
// the reference cannot load, is refused here too).
func decodableAsAny(data []byte) error {
	var v any
	return json.Unmarshal(data, &v)
}

func isJSONObjectOrNull(raw json.RawMessage) bool {
	var m map[string]json.RawMessage
	return json.Unmarshal(raw, &m) == nil
}

// ConfListFromConf wraps a single-plugin config (.conf/.json, deprecated) in
// a list of one, as the reference does.
func ConfListFromConf(pc *PluginConfig) (*NetworkConfigList, error) {
	if pc.Network.Name == "" {
		return nil, NewError(ErrInvalidNetworkConfig, "error converting configuration", "no name")
	}
	if err := ValidateNetworkName(pc.Network.Name); err != nil {
		return nil, err
	}
	list := map[string]any{
		"name":       pc.Network.Name,
		"cniVersion": pc.Network.CNIVersion,
		"plugins":    []json.RawMessage{pc.Bytes},
	}
	data, err := json.Marshal(list)
	if err != nil {
		return nil, err
	}
	return ParseConfigList(data)
}
