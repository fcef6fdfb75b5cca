package runtime

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/knit-cni/knit/pkg/cni"
)

// BuildPluginConfig derives the configuration a plugin receives on stdin
// (spec §2.3): the plugin object with "name" and "cniVersion" set to the
// list's, and each key of inject set to its value (runtimeConfig,
// prevResult, cni.dev/valid-attachments, ...). Every other key passes
// through unchanged; unlike the reference, numbers keep their exact digits
// and <, >, & are not escaped. A nil inject value is an error: omit the key
// instead.
func BuildPluginConfig(plugin *cni.PluginConfig, name, version string, inject map[string]any) ([]byte, error) {
	if plugin == nil || len(plugin.Bytes) == 0 {
		return nil, cni.NewError(cni.ErrInvalidNetworkConfig, "cannot build plugin configuration", "the plugin object is empty")
	}
	dec := json.NewDecoder(bytes.NewReader(plugin.Bytes))
	dec.UseNumber()
	var conf map[string]any
	if err := dec.Decode(&conf); err != nil || conf == nil {
		msg := "not a JSON object"
		if err != nil {
			msg = err.Error()
		}
		return nil, cni.NewError(cni.ErrDecodingFailure, "cannot parse plugin configuration", msg)
	}
	conf["name"] = name
	conf["cniVersion"] = version
	for k, v := range inject {
		if k == "" {
			return nil, cni.NewError(cni.ErrInvalidNetworkConfig, "cannot inject into plugin configuration", "empty key")
		}
		if v == nil {
			return nil, cni.NewError(cni.ErrInvalidNetworkConfig, "cannot inject into plugin configuration",
				fmt.Sprintf("key %q has a nil value", k))
		}
		conf[k] = v
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(conf); err != nil {
		return nil, cni.NewError(cni.ErrDecodingFailure, "cannot encode plugin configuration", err.Error())
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// runtimeConfig returns the capability arguments the plugin opted into
// (capabilities[k] == true) and the runtime supplied, or nil if none.
func runtimeConfig(plugin *cni.PluginConfig, capArgs map[string]any) map[string]any {
	var rc map[string]any
	for k, enabled := range plugin.Network.Capabilities {
		if !enabled {
			continue
		}
		if v, ok := capArgs[k]; ok {
			if rc == nil {
				rc = map[string]any{}
			}
			rc[k] = v
		}
	}
	return rc
}
