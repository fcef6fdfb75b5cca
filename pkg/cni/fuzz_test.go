package cni_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	reftypes "github.com/containernetworking/cni/pkg/types"
	refcreate "github.com/containernetworking/cni/pkg/types/create"

	"github.com/knit-cni/knit/pkg/cni"
)

// The fuzz targets run their seed corpus (f.Add and testdata/fuzz) as plain
// unit tests under `go test`; `go test -fuzz=FuzzX` explores further.

// isCNIError checks err is a *cni.Error with one of the given codes.
func isCNIError(t *testing.T, err error, codes ...uint) {
	t.Helper()
	e := cni.AsError(err, 12345)
	for _, c := range codes {
		if e.Code == c {
			return
		}
	}
	t.Fatalf("error %q has code %d, want one of %v", err, e.Code, codes)
}

// safeRef runs a reference call, turning a panic into an error: the
// reference library has panics on some malformed input (e.g. a null entry in
// a 1.x interfaces list converted to 0.4.0), which knit rejects.
func safeRef[T any](f func() (T, error)) (out T, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("reference panicked: %v", p)
		}
	}()
	return f()
}

func FuzzParseResult(f *testing.F) {
	for _, src := range conversionSources {
		f.Add([]byte(src.json), "")
		f.Add([]byte(src.json), "1.1.0")
	}
	f.Add([]byte(`{"ips":[{"address":"10.0.0.2/24","interface":0}]}`), "1.0.0")
	f.Add([]byte(`{"ips":[{"address":"::ffff:10.0.0.2/120"}],"routes":[{"dst":"::ffff:0.0.0.0/96"}]}`), "0.4.0")
	f.Add([]byte(`{"cniVersion":"0.3.0","ip":[{"version":"4","address":"10.0.0.2/24"}]}`), "")
	f.Add([]byte(`{"cniVersion":"1.1.0","interfaces":[null]}`), "")
	f.Add([]byte(`null`), "0.2.0")
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 40; i++ {
		v := append([]string{""}, cni.AllVersions...)[i%8]
		f.Add([]byte(randomResultJSON(rng, v)), v)
	}
	f.Add([]byte(`{"cniVersion":"0.2.0","ip4":{"ip":"10.0.0.2/24","routes":[{"dst":"1.0.0.0/8","mtu":9}]}}`), "")

	f.Fuzz(func(t *testing.T, data []byte, defVersion string) {
		r, err := cni.ParseResult(data, defVersion)
		if err != nil {
			isCNIError(t, err, cni.ErrDecodingFailure, cni.ErrIncompatibleCNIVersion)
			return
		}
		if !cni.IsSupportedVersion(r.CNIVersion) || r.CNIVersion == "" {
			t.Fatalf("parsed version %q", r.CNIVersion)
		}
		// Round trip in its own version is stable.
		b1, err := r.Encode(r.CNIVersion)
		if err != nil {
			t.Fatalf("a parsed result cannot be printed in its own version %s: %v", r.CNIVersion, err)
		}
		r2, err := cni.ParseResult(b1, "")
		if err != nil {
			t.Fatalf("re-parse of %s: %v", b1, err)
		}
		b2, err := r2.Encode(r2.CNIVersion)
		if err != nil || string(b1) != string(b2) {
			t.Fatalf("round trip differs:\n%s\n%s (%v)", b1, b2, err)
		}
		// Every version: never a panic; output parses back; errors are CNI errors.
		for _, v := range conversionTargets {
			out, err := r.Encode(v)
			if err != nil {
				isCNIError(t, err, cni.ErrIncompatibleCNIVersion)
				continue
			}
			if _, err := cni.ParseResult(out, ""); err != nil {
				t.Fatalf("Encode(%q) printed %s which does not parse: %v", v, out, err)
			}
		}
		compareWithReference(t, data, r)
	})
}

// compareWithReference converts with the reference library too, where the
// two are meant to agree: the source carries its version explicitly, and is
// 1.x, or 0.1/0.2 converted to a newer version. (Inside 0.1/0.2 knit keeps
// only dst/gw of routes, as those specs define them, while the reference
// copies whatever it read; for 0.3/0.4 sources knit derives a missing
// "version" from the address where the reference prints "".)
func compareWithReference(t *testing.T, data []byte, r *cni.Result) {
	var head struct {
		CNIVersion string `json:"cniVersion"`
	}
	if json.Unmarshal(data, &head) != nil || head.CNIVersion == "" {
		return
	}
	fromOld := head.CNIVersion == "0.1.0" || head.CNIVersion == "0.2.0"
	if head.CNIVersion != "1.0.0" && head.CNIVersion != "1.1.0" && !fromOld {
		return
	}
	ref, err := safeRef(func() (reftypes.Result, error) { return refcreate.CreateFromBytes(data) })
	if err != nil {
		return // knit accepts more than the reference here only by reading it right
	}
	for _, v := range cni.AllVersions {
		if fromOld && (v == "0.1.0" || v == "0.2.0") {
			continue
		}
		want, refErr := safeRef(func() ([]byte, error) {
			conv, err := ref.GetAsVersion(v)
			if err != nil {
				return nil, err
			}
			return json.Marshal(conv)
		})
		got, err := r.Encode(v)
		if refErr != nil {
			if strings.Contains(refErr.Error(), "panicked") {
				continue
			}
			if err == nil || err.Error() != refErr.Error() {
				t.Fatalf("to %s: knit %v / %s, reference %v", v, err, got, refErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("to %s: knit %v, reference %s", v, err, want)
		}
		if !jsonEqual(t, got, want) {
			t.Fatalf("to %s:\nknit      %s\nreference %s", v, got, want)
		}
	}
}

var configListSeeds = []string{
	`{"cniVersion":"1.1.0","name":"dbnet","plugins":[{"type":"bridge","ipam":{"type":"host-local"}},{"type":"tuning"},{"type":"portmap","capabilities":{"portMappings":true}}]}`,
	`{"cniVersion":"0.3.1","cniVersions":["0.4.0","1.0.0","9.9.9"],"name":"n","disableCheck":"true","disableGC":false,"plugins":[{"type":"x"}]}`,
	`{"name":"n","loadOnlyInlinedPlugins":true}`,
	`{"name":"n","plugins":[]}`,
	`{"name":"n","plugins":[{"type":"../x"}]}`,
	`{"name":"_n","plugins":[{"type":"x"}]}`,
	`{"NAME":"n","plugins":[{"TYPE":"x","prevResult":{"cniVersion":"1.0.0"}}]}`,
	`{"name":"n","cniVersions":null,"plugins":[{"type":"x","big":1e400}]}`,
	`{"name":"n","disableCheck":"yes","plugins":[{"type":"x"}]}`,
}

func FuzzParseConfigList(f *testing.F) {
	for _, s := range configListSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		list, err := cni.ParseConfigList(data)
		ref, refErr := libcni.ConfListFromBytes(data)
		if err != nil {
			isCNIError(t, err, cni.ErrDecodingFailure, cni.ErrInvalidNetworkConfig)
			return
		}
		// knit is never more lenient than the reference.
		if refErr != nil {
			t.Fatalf("knit accepts what the reference refuses (%v): %s", refErr, data)
		}
		if cni.ValidateNetworkName(list.Name) != nil || list.Name != ref.Name {
			t.Fatalf("name %q (reference %q)", list.Name, ref.Name)
		}
		if list.CNIVersion != ref.CNIVersion {
			if c, err := cni.CompareVersions(list.CNIVersion, ref.CNIVersion); err != nil || c != 0 {
				t.Fatalf("version %q, reference %q", list.CNIVersion, ref.CNIVersion)
			}
		}
		if list.DisableCheck != ref.DisableCheck || list.DisableGC != ref.DisableGC || list.LoadOnlyInlinedPlugins != ref.LoadOnlyInlinedPlugins {
			t.Fatalf("flags %+v, reference %+v", list, ref)
		}
		if len(list.Plugins) != len(ref.Plugins) {
			t.Fatalf("%d plugins, reference %d", len(list.Plugins), len(ref.Plugins))
		}
		for i, p := range list.Plugins {
			if cni.ValidatePluginType(p.Network.Type) != nil || p.Network.Type != ref.Plugins[i].Network.Type {
				t.Fatalf("plugin %d type %q, reference %q", i, p.Network.Type, ref.Plugins[i].Network.Type)
			}
			if !jsonEqual(t, p.Bytes, ref.Plugins[i].Bytes) {
				t.Fatalf("plugin %d bytes %s, reference %s", i, p.Bytes, ref.Plugins[i].Bytes)
			}
		}
		if string(list.Bytes) != string(data) {
			t.Fatal("list bytes not kept")
		}
	})
}

func FuzzParsePluginConfig(f *testing.F) {
	for _, s := range []string{
		`{"cniVersion":"1.0.0","name":"n","type":"bridge","ipam":{"type":"host-local","ranges":[[{"subnet":"10.0.0.0/24"}]]}}`,
		`{"type":"x","capabilities":{"mac":true},"prevResult":{"cniVersion":"1.0.0","ips":[]}}`,
		`{"type":"x","cni.dev/valid-attachments":[{"containerID":"c","ifname":"eth0"}],"cni.dev/attachments":[]}`,
		`{"type":"a\\b"}`, `{"type":""}`, `{"Type":"x","IPAM":{"TYPE":"y/z"}}`, `[]`, `{"type":"x","dns":{"nameservers":["1.1.1.1"]}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		pc, err := cni.ParsePluginConfig(data)
		ref, refErr := libcni.NetworkPluginConfFromBytes(data)
		if err != nil {
			isCNIError(t, err, cni.ErrDecodingFailure, cni.ErrInvalidNetworkConfig)
			return
		}
		if refErr != nil {
			t.Fatalf("knit accepts what the reference refuses (%v): %s", refErr, data)
		}
		n := pc.Network
		if cni.ValidatePluginType(n.Type) != nil || (n.IPAM.Type != "" && cni.ValidatePluginType(n.IPAM.Type) != nil) {
			t.Fatalf("invalid type accepted: %q / %q", n.Type, n.IPAM.Type)
		}
		r := ref.Network
		if n.Type != r.Type || n.Name != r.Name || n.CNIVersion != r.CNIVersion || n.IPAM.Type != r.IPAM.Type || len(n.Capabilities) != len(r.Capabilities) {
			t.Fatalf("knit %+v, reference %+v", n, r)
		}
		if string(pc.Bytes) != string(data) {
			t.Fatal("bytes not kept")
		}
	})
}

// refArgsFuzz has the keys the fuzz target declares known.
type refArgsFuzz struct {
	reftypes.CommonArgs
	IP  reftypes.UnmarshallableString
	MAC reftypes.UnmarshallableString
}

func FuzzParseArgs(f *testing.F) {
	for _, s := range []string{"", "IP=10.0.0.2", "IgnoreUnknown=1;K8S_POD_NAME=p;K8S_POD_NAMESPACE=ns", "a=b=c", "=", ";", "IP=;MAC=x", "X=1;IgnoreUnknown=true", "IgnoreUnknown=maybe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		pairs, err := cni.ParseArgs(s)
		if err != nil {
			isCNIError(t, err, cni.ErrInvalidEnvironmentVariables)
		} else if out, ferr := cni.FormatArgs(pairs); ferr == nil && out != s {
			t.Fatalf("FormatArgs(ParseArgs(%q)) = %q", s, out)
		}

		// LoadArgs agrees with the reference types.LoadArgs on acceptance
		// and values. ("CommonArgs" is a Go field name the reference
		// matches by reflection, a quirk knit does not copy.)
		if strings.Contains(s, "CommonArgs") {
			return
		}
		var ref refArgsFuzz
		refErr := reftypes.LoadArgs(s, &ref)
		a, err := cni.LoadArgs(s, "IP", "MAC")
		if (err != nil) != (refErr != nil) {
			t.Fatalf("LoadArgs(%q): knit %v, reference %v", s, err, refErr)
		}
		if err != nil {
			isCNIError(t, err, cni.ErrInvalidEnvironmentVariables)
			return
		}
		ip, _ := a.Get("IP")
		mac, _ := a.Get("MAC")
		if ip != string(ref.IP) || mac != string(ref.MAC) {
			t.Fatalf("LoadArgs(%q): knit IP=%q MAC=%q, reference IP=%q MAC=%q", s, ip, mac, ref.IP, ref.MAC)
		}
	})
}
