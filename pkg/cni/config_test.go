package cni_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"

	"github.com/knit-cni/knit/pkg/cni"
)

func listJSON(extra string) string {
	if extra != "" {
		extra += ","
	}
	return `{` + extra + `"name":"net1","plugins":[{"type":"bridge"}]}`
}

// Version selection (cniVersion ∪ cniVersions) against the reference
// libcni.ConfListFromBytes.
func TestConfigListVersionSelectionMatchesReference(t *testing.T) {
	tests := []struct {
		fields string
		want   string // "" with wantErr false means selected ""
		err    bool
	}{
		{`"cniVersion":"0.3.1","cniVersions":["0.4.0","1.0.0","9.9.9"]`, "1.0.0", false}, // checklist §11 #11
		{`"cniVersion":"1.0.0"`, "1.0.0", false},
		{`"cniVersion":"9.9.9"`, "9.9.9", false},
		{`"cniVersion":""`, "", false},
		{``, "", false},
		{`"cniVersions":["1.0.0","0.4.0"]`, "1.0.0", false},
		{`"cniVersion":"1.1.0","cniVersions":["1.0.0"]`, "1.1.0", false},
		{`"cniVersion":"9.9.9","cniVersions":["9.9.8"]`, "9.9.9", false},
		{`"cniVersion":"0.4.0","cniVersions":[]`, "0.4.0", false},
		{`"cniVersions":[]`, "", false},
		{`"cniVersion":"1.0.0","cniVersions":["1.1.0","2.0.0"]`, "1.1.0", false},
		{`"cniVersion":"0.3.1","cniVersions":["0.4"]`, "0.4", false},
		{`"cniVersion":"1.0.0","cniVersions":["0.2.0","0.10.0"]`, "1.0.0", false},
		{`"cniVersions":["0.9.0","0.10.0"]`, "0.10.0", false},
		{`"cniVersion":"1.0.0","cniVersions":["abc"]`, "", true},
		{`"cniVersion":"x.y","cniVersions":["1.0.0"]`, "", true},
		{`"cniVersion":"1.0.0","cniVersions":["1.0.0-rc1"]`, "", true},
		{`"cniVersion":"1.0.0","cniVersions":["1.0.0.0"]`, "", true},
		{`"cniVersion":"1.0.0","cniVersions":"1.1.0"`, "", true},
		{`"cniVersion":"1.0.0","cniVersions":[1]`, "", true},
		{`"cniVersion":1`, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.fields, func(t *testing.T) {
			data := []byte(listJSON(tt.fields))
			ref, refErr := libcni.ConfListFromBytes(data)
			got, err := cni.ParseConfigList(data)
			if (refErr != nil) != tt.err || (err != nil) != tt.err {
				t.Fatalf("errors: knit %v, reference %v, want error %v", err, refErr, tt.err)
			}
			if tt.err {
				if c := cni.Code(err); c != cni.ErrInvalidNetworkConfig && c != cni.ErrDecodingFailure {
					t.Errorf("code %d", c)
				}
				return
			}
			if ref.CNIVersion != tt.want || got.CNIVersion != tt.want {
				t.Errorf("selected knit %q reference %q want %q", got.CNIVersion, ref.CNIVersion, tt.want)
			}
		})
	}
}

// Booleans written as JSON booleans or as strings, compared with the reference.
func TestConfigListBooleans(t *testing.T) {
	values := []struct {
		json string
		want bool
		err  bool
	}{
		{`true`, true, false}, {`false`, false, false},
		{`"true"`, true, false}, {`"False"`, false, false}, {`"TRUE"`, true, false},
		{`"yes"`, false, true}, {`"1"`, false, true}, {`1`, false, true}, {`null`, false, true}, {`""`, false, true},
	}
	for _, key := range []string{"disableCheck", "disableGC", "loadOnlyInlinedPlugins"} {
		for _, v := range values {
			t.Run(key+"="+v.json, func(t *testing.T) {
				data := []byte(listJSON(fmt.Sprintf(`"cniVersion":"1.1.0","%s":%s`, key, v.json)))
				ref, refErr := libcni.ConfListFromBytes(data)
				got, err := cni.ParseConfigList(data)
				if (err != nil) != v.err || (refErr != nil) != v.err {
					t.Fatalf("knit %v, reference %v, want error %v", err, refErr, v.err)
				}
				if v.err {
					if cni.Code(err) != cni.ErrDecodingFailure || !strings.Contains(err.Error(), key) {
						t.Errorf("error %q (code %d) should be code 6 and name %s", err, cni.Code(err), key)
					}
					return
				}
				gotV := map[string]bool{"disableCheck": got.DisableCheck, "disableGC": got.DisableGC, "loadOnlyInlinedPlugins": got.LoadOnlyInlinedPlugins}[key]
				refV := map[string]bool{"disableCheck": ref.DisableCheck, "disableGC": ref.DisableGC, "loadOnlyInlinedPlugins": ref.LoadOnlyInlinedPlugins}[key]
				if gotV != v.want || refV != v.want {
					t.Errorf("knit %v reference %v want %v", gotV, refV, v.want)
				}
			})
		}
	}
}

func TestParseConfigListErrors(t *testing.T) {
	tests := []struct {
		name, json string
		code       uint
		msg        string // substring of Error()
		refAccepts bool   // knit is deliberately stricter than libcni
	}{
		{"bad JSON", `{"name":`, 6, "error parsing configuration list", false},
		{"not an object", `[1]`, 6, "error parsing configuration list", false},
		{"null document", `null`, 6, "must be a JSON object", false},
		{"missing name", `{"cniVersion":"1.0.0","plugins":[{"type":"x"}]}`, 7, "no name", false},
		{"name not a string", `{"name":5,"plugins":[{"type":"x"}]}`, 6, "name", false},
		{"name null", `{"name":null,"plugins":[{"type":"x"}]}`, 6, "name must not be null", false},
		{"name in another case", `{"Name":"net1","plugins":[{"type":"x"}]}`, 7, "no name", false},
		{"empty name", `{"name":"","plugins":[{"type":"x"}]}`, 7, "missing network name", true},
		{"invalid name", `{"name":"_n","plugins":[{"type":"x"}]}`, 7, "invalid characters found in network name; _n", true},
		{"name with slash", `{"name":"a/b","plugins":[{"type":"x"}]}`, 7, "invalid characters found in network name", true},
		{"unparsable cniVersion", `{"cniVersion":"one","name":"n","plugins":[{"type":"x"}]}`, 7, "invalid cniVersion", true},
		{"loadOnlyInlinedPlugins without plugins", `{"name":"n","loadOnlyInlinedPlugins":true}`, 7, "loadOnlyInlinedPlugins", false},
		{"empty plugins", `{"name":"n","plugins":[]}`, 7, "no plugins in list", false},
		{"plugins null", `{"name":"n","plugins":null}`, 6, "plugins must not be null", false},
		{"plugins not a list", `{"name":"n","plugins":{"type":"x"}}`, 6, "plugins", false},
		{"plugin not an object", `{"name":"n","plugins":[1]}`, 6, "plugin 0", false},
		{"null plugin", `{"name":"n","plugins":[null]}`, 7, "missing 'type'", false},
		{"missing type", `{"name":"n","plugins":[{"type":"x"},{"ipam":{}}]}`, 7, "plugin 1: error parsing plugin configuration; missing 'type'", false},
		{"type with /", `{"name":"n","plugins":[{"type":"a/b"}]}`, 7, "invalid plugin name: a/b", true},
		{"type with \\", `{"name":"n","plugins":[{"type":"a\\b"}]}`, 7, `invalid plugin name: a\b`, true},
		{"type ..", `{"name":"n","plugins":[{"type":".."}]}`, 7, "invalid plugin name: ..", true},
		{"type ../x", `{"name":"n","plugins":[{"type":"../x"}]}`, 7, "invalid plugin name", true},
		{"type .", `{"name":"n","plugins":[{"type":"."}]}`, 7, "invalid plugin name", true},
		{"ipam type with /", `{"name":"n","plugins":[{"type":"x","ipam":{"type":"/bin/sh"}}]}`, 7, "invalid plugin name: /bin/sh", true},
		{"capabilities of the wrong type", `{"name":"n","plugins":[{"type":"x","capabilities":{"a":"yes"}}]}`, 6, "plugin 0", false},
		{"prevResult not an object", `{"name":"n","plugins":[{"type":"x","prevResult":5}]}`, 6, "prevResult must be a JSON object", false},
		{"number out of float64 range", `{"name":"n","plugins":[{"type":"x","big":1e400}]}`, 6, "error parsing", false},
		{"number out of range at top level", `{"name":"n","x":1e400,"plugins":[{"type":"x"}]}`, 6, "error parsing", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			list, err := cni.ParseConfigList([]byte(tt.json))
			if err == nil {
				t.Fatalf("accepted: %+v", list)
			}
			if cni.Code(err) != tt.code {
				t.Errorf("code %d, want %d (%v)", cni.Code(err), tt.code, err)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not contain %q", err, tt.msg)
			}
			if _, refErr := libcni.ConfListFromBytes([]byte(tt.json)); (refErr == nil) != tt.refAccepts {
				t.Errorf("reference error %v; table says reference accepts: %v", refErr, tt.refAccepts)
			}
		})
	}
}

func TestParseConfigList(t *testing.T) {
	data := []byte(`{"cniVersion":"1.1.0","name":"dbnet","disableCheck":"true",
		"plugins":[
			{"type":"bridge","bridge":"cni0","ipam":{"type":"host-local","subnet":"10.1.0.0/16"},"dns":{"nameservers":["10.1.0.1"]}},
			{"TYPE":"tuning","capabilities":{"mac":true,"ips":false}},
			{"type":"portmap","capabilities":{"portMappings":true},"snat":true}]}`)
	list, err := cni.ParseConfigList(data)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := libcni.ConfListFromBytes(data)
	if err != nil {
		t.Fatal(err)
	}
	if list.Name != ref.Name || list.CNIVersion != ref.CNIVersion || list.DisableCheck != ref.DisableCheck ||
		list.DisableGC != ref.DisableGC || len(list.Plugins) != len(ref.Plugins) {
		t.Fatalf("knit %+v\nreference %+v", list, ref)
	}
	if string(list.Bytes) != string(data) {
		t.Error("list bytes not kept verbatim")
	}
	for i, p := range list.Plugins {
		r := ref.Plugins[i].Network
		if p.Network.Type != r.Type || p.Network.IPAM.Type != r.IPAM.Type || !reflect.DeepEqual(p.Network.Capabilities, r.Capabilities) {
			t.Errorf("plugin %d: knit %+v reference %+v", i, p.Network, r)
		}
		if !jsonEqual(t, p.Bytes, ref.Plugins[i].Bytes) {
			t.Errorf("plugin %d bytes: %s vs %s", i, p.Bytes, ref.Plugins[i].Bytes)
		}
	}
	if list.Plugins[0].Network.DNS.Nameservers[0] != "10.1.0.1" {
		t.Errorf("dns: %+v", list.Plugins[0].Network.DNS)
	}

	// Without a plugins key the list is fine (plugins may come from the
	// network's subdirectory) and has none.
	list, err = cni.ParseConfigList([]byte(`{"cniVersion":"1.1.0","name":"n","loadOnlyInlinedPlugins":false}`))
	if err != nil || len(list.Plugins) != 0 {
		t.Errorf("no plugins key: %+v, %v", list, err)
	}
	// Top-level keys are exact: "DisableCheck" is not disableCheck (as the reference).
	list, err = cni.ParseConfigList([]byte(listJSON(`"DisableCheck":true`)))
	if err != nil || list.DisableCheck {
		t.Errorf("DisableCheck: %+v, %v", list, err)
	}
}

func TestParsePluginConfig(t *testing.T) {
	data := []byte(`{"cniVersion":"0.4.0","name":"mynet","type":"ptp","ipMasq":true,"ipam":{"type":"host-local"},
		"prevResult":{"cniVersion":"0.4.0"},"runtimeConfig":{"mac":"x"},"capabilities":{"mac":true}}`)
	pc, err := cni.ParsePluginConfig(data)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := libcni.NetworkPluginConfFromBytes(data)
	if err != nil {
		t.Fatal(err)
	}
	n := pc.Network
	if n.Name != ref.Network.Name || n.Type != ref.Network.Type || n.CNIVersion != ref.Network.CNIVersion || n.IPAM.Type != ref.Network.IPAM.Type {
		t.Errorf("knit %+v reference %+v", n, ref.Network)
	}
	if string(pc.Bytes) != string(data) || string(n.RawPrevResult) != `{"cniVersion":"0.4.0"}` {
		t.Errorf("bytes %s prevResult %s", pc.Bytes, n.RawPrevResult)
	}
	for _, bad := range []string{`{"name":"x"}`, `{"type":""}`, `{"type":5}`, `not json`, `{"type":"x","prevResult":"s"}`} {
		if _, err := cni.ParsePluginConfig([]byte(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
		if _, err := libcni.NetworkPluginConfFromBytes([]byte(bad)); err == nil {
			t.Errorf("%s accepted by the reference", bad)
		}
	}
}

func TestConfListFromConf(t *testing.T) {
	data := []byte(`{"cniVersion":"0.4.0","name":"mynet","type":"bridge","disableCheck":true,"isGateway":true}`)
	pc, err := cni.ParsePluginConfig(data)
	if err != nil {
		t.Fatal(err)
	}
	list, err := cni.ConfListFromConf(pc)
	if err != nil {
		t.Fatal(err)
	}
	refPC, _ := libcni.NetworkPluginConfFromBytes(data)
	//lint:ignore SA1019 ConfListFromConf is the reference behaviour cni.ConfListFromConf reproduces
	ref, err := libcni.ConfListFromConf(refPC)
	if err != nil {
		t.Fatal(err)
	}
	if list.Name != ref.Name || list.CNIVersion != ref.CNIVersion || list.DisableCheck != ref.DisableCheck || len(list.Plugins) != 1 {
		t.Errorf("knit %+v reference %+v", list, ref)
	}
	if list.DisableCheck {
		t.Error("disableCheck of a single config is not carried to the list")
	}
	if !jsonEqual(t, list.Plugins[0].Bytes, data) || !jsonEqual(t, list.Bytes, ref.Bytes) {
		t.Errorf("plugin bytes %s list bytes %s (reference %s)", list.Plugins[0].Bytes, list.Bytes, ref.Bytes)
	}
	noName, _ := cni.ParsePluginConfig([]byte(`{"type":"bridge"}`))
	if _, err := cni.ConfListFromConf(noName); cni.Code(err) != cni.ErrInvalidNetworkConfig {
		t.Errorf("no name: %v", err)
	}
}

func TestNetConfAttachments(t *testing.T) {
	a := `[{"containerID":"c1","ifname":"eth0"}]`
	b := `[{"containerID":"c2","ifname":"eth1"}]`
	tests := []struct {
		fields string
		want   []cni.GCAttachment
	}{
		{`"cni.dev/valid-attachments":` + a + `,"cni.dev/attachments":` + b, []cni.GCAttachment{{ContainerID: "c1", IfName: "eth0"}}},
		{`"cni.dev/attachments":` + b, []cni.GCAttachment{{ContainerID: "c2", IfName: "eth1"}}},
		{`"cni.dev/valid-attachments":[],"cni.dev/attachments":` + b, []cni.GCAttachment{}},
		{``, nil},
	}
	for _, tt := range tests {
		var nc cni.NetConf
		if err := json.Unmarshal([]byte(`{"type":"x"`+map[bool]string{true: "", false: ","}[tt.fields == ""]+tt.fields+`}`), &nc); err != nil {
			t.Fatal(err)
		}
		if got := nc.Attachments(); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: got %#v want %#v", tt.fields, got, tt.want)
		}
	}
}

func TestBoolJSON(t *testing.T) {
	var b cni.Bool
	for in, want := range map[string]bool{`true`: true, `"tRuE"`: true, `false`: false, `"FALSE"`: false} {
		if err := json.Unmarshal([]byte(in), &b); err != nil || bool(b) != want {
			t.Errorf("%s: %v %v", in, b, err)
		}
	}
	for _, in := range []string{`"yes"`, `0`, `null`, `[]`, `{}`} {
		if err := b.UnmarshalJSON([]byte(in)); err == nil {
			t.Errorf("%s accepted", in)
		}
	}
}
