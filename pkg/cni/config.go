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
// case, as the reference does for disableCheck and disableGC.
type Bool bool

// UnmarshalJSON accepts true, false, "true" and "false".
func (b *Bool) UnmarshalJSON(data []byte) error {
	var x bool
	if err := json.Unmarshal(data, &x); err == nil {
		*b = Bool(x)
		return nil
	}
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("expected a boolean or \"true\"/\"false\", got %s", data)
	}
	switch strings.ToLower(s) {
	case "true":
		*b = true
	case "false":
		*b = false
	default:
		return fmt.Errorf("expected a boolean or \"true\"/\"false\", got %q", s)
	}
	return nil
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

// ParsePluginConfig parses one plugin object. It must have a valid type.
func ParsePluginConfig(data []byte) (*PluginConfig, error) {
	var nc NetConf
	if err := json.Unmarshal(data, &nc); err != nil {
		return nil, NewError(ErrDecodingFailure, "error parsing plugin configuration", err.Error())
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

// ParseConfigList parses a conflist. Plugins from the network's subdirectory
// are not loaded here (see runtime.LoadConfList); a list may therefore come
// back with no plugins only when plugins may still be merged in.
func ParseConfigList(data []byte) (*NetworkConfigList, error) {
	var raw struct {
		CNIVersion             string            `json:"cniVersion"`
		CNIVersions            []string          `json:"cniVersions"`
		Name                   string            `json:"name"`
		DisableCheck           Bool              `json:"disableCheck"`
		DisableGC              Bool              `json:"disableGC"`
		LoadOnlyInlinedPlugins Bool              `json:"loadOnlyInlinedPlugins"`
		Plugins                []json.RawMessage `json:"plugins"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, NewError(ErrDecodingFailure, "error parsing configuration list", err.Error())
	}
	var probe map[string]json.RawMessage
	_ = json.Unmarshal(data, &probe)
	_, hasPlugins := probe["plugins"]
	if raw.Name == "" {
		return nil, NewError(ErrInvalidNetworkConfig, "error parsing configuration list", "no name")
	}
	if err := ValidateNetworkName(raw.Name); err != nil {
		return nil, err
	}
	if bool(raw.LoadOnlyInlinedPlugins) && !hasPlugins {
		return nil, NewError(ErrInvalidNetworkConfig, "error parsing configuration list",
			"loadOnlyInlinedPlugins is true but there is no 'plugins' key")
	}
	if hasPlugins && len(raw.Plugins) == 0 {
		return nil, NewError(ErrInvalidNetworkConfig, "error parsing configuration list", "no plugins in list")
	}
	v, err := SelectVersion(raw.CNIVersion, raw.CNIVersions)
	if err != nil {
		return nil, NewError(ErrInvalidNetworkConfig, "error parsing configuration list", err.Error())
	}
	list := &NetworkConfigList{
		Name:                   raw.Name,
		CNIVersion:             v,
		DisableCheck:           bool(raw.DisableCheck),
		DisableGC:              bool(raw.DisableGC),
		LoadOnlyInlinedPlugins: bool(raw.LoadOnlyInlinedPlugins),
		Bytes:                  append([]byte(nil), data...),
	}
	for i, p := range raw.Plugins {
		pc, err := ParsePluginConfig(p)
		if err != nil {
			return nil, fmt.Errorf("plugin %d: %w", i, err)
		}
		list.Plugins = append(list.Plugins, pc)
	}
	return list, nil
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
