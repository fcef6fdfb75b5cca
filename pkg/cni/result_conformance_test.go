package cni_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	reftypes "github.com/containernetworking/cni/pkg/types"
	refcreate "github.com/containernetworking/cni/pkg/types/create"
	refversion "github.com/containernetworking/cni/pkg/version"

	"github.com/knit-cni/knit/pkg/cni"
)

// Results in every version, used as conversion sources. Each is converted to
// every target version by knit and by the reference library
// (containernetworking/cni v1.3.1) and the JSON compared semantically.
var conversionSources = []struct {
	name string
	json string
}{
	{"1.1.0 all fields", `{"cniVersion":"1.1.0",
		"interfaces":[
			{"name":"eth0","mac":"aa:bb:cc:dd:ee:ff","mtu":1400,"sandbox":"/var/run/netns/c1","socketPath":"/run/vhost.sock","pciID":"0000:04:00.5"},
			{"name":"veth1","mac":"aa:bb:cc:dd:ee:00"}],
		"ips":[
			{"interface":0,"address":"10.0.0.2/24","gateway":"10.0.0.1"},
			{"interface":1,"address":"2001:db8::2/64","gateway":"2001:db8::1"},
			{"address":"10.0.1.2/16"}],
		"routes":[
			{"dst":"0.0.0.0/0","gw":"10.0.0.1","mtu":1300,"advmss":1260,"priority":5,"table":0,"scope":0},
			{"dst":"192.168.0.0/16","table":100,"scope":253},
			{"dst":"::/0","gw":"2001:db8::1","priority":10}],
		"dns":{"nameservers":["10.0.0.53","2001:db8::53"],"domain":"example.org","search":["a.example.org","b"],"options":["ndots:2"]}}`},
	{"1.1.0 observed by the reference (checklist 7.10)", `{"cniVersion":"1.1.0",
		"interfaces":[{"name":"eth0","mtu":1400,"sandbox":"/x"}],
		"ips":[{"address":"10.0.0.2/24","gateway":"10.0.0.1","interface":0}],
		"routes":[{"dst":"0.0.0.0/0","mtu":1300,"table":0,"scope":0,"priority":5}]}`},
	{"1.1.0 IPv6 only", `{"cniVersion":"1.1.0",
		"ips":[{"address":"fd00::5/64","interface":0}],
		"routes":[{"dst":"::/0","gw":"fd00::1"},{"dst":"10.0.0.0/8"}]}`},
	{"1.1.0 no IPs", `{"cniVersion":"1.1.0","interfaces":[{"name":"eth0"}],"dns":{"domain":"x"}}`},
	{"1.1.0 empty", `{"cniVersion":"1.1.0"}`},
	{"1.1.0 several addresses per family, route without an address family", `{"cniVersion":"1.1.0",
		"ips":[{"address":"10.0.0.2/24"},{"address":"10.0.0.3/24","gateway":"10.0.0.1"},{"address":"10.1.0.2/24"}],
		"routes":[{"dst":"2001:db8::/32"},{"dst":"10.2.0.0/16","gw":"10.0.0.1"}]}`},
	{"1.1.0 empty dns object", `{"cniVersion":"1.1.0","ips":[{"address":"10.0.0.2/24"}],"dns":{}}`},
	{"1.1.0 dns with empty lists", `{"cniVersion":"1.1.0","ips":[{"address":"10.0.0.2/24"}],"dns":{"nameservers":[],"search":[]}}`},
	{"1.0.0 dual stack", `{"cniVersion":"1.0.0",
		"interfaces":[{"name":"eth0","sandbox":"/x"}],
		"ips":[{"address":"10.0.0.2/24","interface":0},{"address":"2001:db8::2/64","interface":0}],
		"routes":[{"dst":"0.0.0.0/0","gw":"10.0.0.1"},{"dst":"::/0","gw":"2001:db8::1"}],
		"dns":{"nameservers":["8.8.8.8"]}}`},
	{"1.0.0 with 1.1.0 fields", `{"cniVersion":"1.0.0",
		"interfaces":[{"name":"eth0","mtu":9000,"pciID":"0000:01:00.0"}],
		"ips":[{"address":"10.0.0.2/24","interface":0}],
		"routes":[{"dst":"10.9.0.0/16","table":7}]}`},
	{"0.4.0 full", `{"cniVersion":"0.4.0",
		"interfaces":[{"name":"eth0","mac":"aa:bb:cc:dd:ee:ff","sandbox":"/x"},{"name":"br0"}],
		"ips":[{"version":"4","interface":0,"address":"10.0.0.2/24","gateway":"10.0.0.1"},
		       {"version":"6","interface":0,"address":"2001:db8::2/64"}],
		"routes":[{"dst":"0.0.0.0/0","gw":"10.0.0.1"},{"dst":"::/0"}],
		"dns":{"nameservers":["1.1.1.1"],"search":["s"]}}`},
	{"0.4.0 route table and scope 0", `{"cniVersion":"0.4.0",
		"ips":[{"version":"4","address":"10.0.0.2/24"}],
		"routes":[{"dst":"0.0.0.0/0","table":0,"scope":0,"mtu":1400}],"dns":{}}`},
	{"0.3.1 interface indices", `{"cniVersion":"0.3.1",
		"interfaces":[{"name":"a"},{"name":"b"}],
		"ips":[{"version":"4","interface":1,"address":"10.0.0.2/24"},{"version":"4","address":"10.0.0.3/24"}],
		"dns":{}}`},
	{"0.3.0 with ips", `{"cniVersion":"0.3.0",
		"ips":[{"version":"6","address":"2001:db8::9/64","gateway":"2001:db8::1"}],"dns":{}}`},
	{"0.2.0 dual stack", `{"cniVersion":"0.2.0",
		"ip4":{"ip":"10.0.0.2/24","gateway":"10.0.0.1","routes":[{"dst":"0.0.0.0/0"},{"dst":"10.9.0.0/16","gw":"10.0.0.254"}]},
		"ip6":{"ip":"2001:db8::2/64","routes":[{"dst":"::/0","gw":"2001:db8::1"}]},
		"dns":{"nameservers":["10.0.0.53"],"domain":"d"}}`},
	{"0.2.0 IPv6 only", `{"cniVersion":"0.2.0","ip6":{"ip":"2001:db8::2/64"},"dns":{}}`},
	{"0.2.0 no IPs", `{"cniVersion":"0.2.0","dns":{"domain":"d"}}`},
	{"0.1.0 IPv4", `{"cniVersion":"0.1.0","ip4":{"ip":"192.168.1.5/24","gateway":"192.168.1.1"},"dns":{}}`},
	{"no cniVersion (0.1.0)", `{"ip4":{"ip":"192.168.1.5/24"}}`},
}

var conversionTargets = append([]string{""}, append(cni.AllVersions, "1.2.0", "0.5.0", "2.0")...)

// refConvert is the oracle: the reference library's create + GetAsVersion +
// json.Marshal.
func refConvert(t *testing.T, src []byte, to string) ([]byte, error) {
	t.Helper()
	res, err := refcreate.CreateFromBytes(src)
	if err != nil {
		t.Fatalf("reference cannot read source: %v", err)
	}
	out, err := res.GetAsVersion(to)
	if err != nil {
		return nil, err
	}
	return json.Marshal(out)
}

// jsonEqual reports whether a and b are the same JSON value, ignoring key
// order and formatting.
func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("not JSON: %v: %s", err, a)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("not JSON: %v: %s", err, b)
	}
	return reflect.DeepEqual(x, y)
}

func TestResultConversionMatchesReference(t *testing.T) {
	for _, src := range conversionSources {
		for _, to := range conversionTargets {
			t.Run(src.name+"/to "+to, func(t *testing.T) {
				want, refErr := refConvert(t, []byte(src.json), to)
				res, err := cni.ParseResult([]byte(src.json), "")
				if err != nil {
					t.Fatalf("ParseResult: %v", err)
				}
				got, err := res.Encode(to)
				if refErr != nil {
					if err == nil {
						t.Fatalf("reference fails with %q, knit printed %s", refErr, got)
					}
					if err.Error() != refErr.Error() {
						t.Errorf("error %q, reference %q", err, refErr)
					}
					if cni.Code(err) != cni.ErrIncompatibleCNIVersion {
						t.Errorf("error code %d, want %d", cni.Code(err), cni.ErrIncompatibleCNIVersion)
					}
					return
				}
				if err != nil {
					t.Fatalf("Encode(%q): %v; reference printed %s", to, err, want)
				}
				if !jsonEqual(t, got, want) {
					t.Errorf("Encode(%q)\n got: %s\nwant: %s", to, got, want)
				}
				// The converted result reads back to the same thing.
				again, err := cni.ParseResult(got, "")
				if err != nil {
					t.Fatalf("re-parse of %s: %v", got, err)
				}
				got2, err := again.Encode(to)
				if err != nil || string(got2) != string(got) {
					t.Errorf("re-encode differs: %s (err %v) vs %s", got2, err, got)
				}
			})
		}
	}
}

// Exact shapes the spec and the reference agree on, spelled out so a reader
// sees them (the table above proves them against the reference).
func TestResultEncodeShapes(t *testing.T) {
	src := `{"cniVersion":"1.1.0","interfaces":[{"name":"eth0","mtu":1400,"sandbox":"/x"}],
		"ips":[{"address":"10.0.0.2/24","gateway":"10.0.0.1","interface":0}],
		"routes":[{"dst":"0.0.0.0/0","mtu":1300,"table":0,"scope":0,"priority":5}]}`
	res, err := cni.ParseResult([]byte(src), "")
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{
		"0.4.0": `{"cniVersion":"0.4.0","interfaces":[{"name":"eth0","sandbox":"/x"}],"ips":[{"version":"4","interface":0,"address":"10.0.0.2/24","gateway":"10.0.0.1"}],"routes":[{"dst":"0.0.0.0/0","mtu":1300,"priority":5,"table":0,"scope":0}],"dns":{}}`,
		"0.2.0": `{"cniVersion":"0.2.0","ip4":{"ip":"10.0.0.2/24","gateway":"10.0.0.1","routes":[{"dst":"0.0.0.0/0"}]},"dns":{}}`,
		"1.0.0": `{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","mtu":1400,"sandbox":"/x"}],"ips":[{"interface":0,"address":"10.0.0.2/24","gateway":"10.0.0.1"}],"routes":[{"dst":"0.0.0.0/0","mtu":1300,"priority":5,"table":0,"scope":0}]}`,
		"":      `{"cniVersion":"0.1.0","ip4":{"ip":"10.0.0.2/24","gateway":"10.0.0.1","routes":[{"dst":"0.0.0.0/0"}]},"dns":{}}`,
	}
	for v, want := range cases {
		got, err := res.Encode(v)
		if err != nil {
			t.Fatalf("Encode(%q): %v", v, err)
		}
		if !jsonEqual(t, got, []byte(want)) {
			t.Errorf("Encode(%q)\n got: %s\nwant: %s", v, got, want)
		}
	}

	// Index absent stays absent; table/scope absent stay absent.
	res, err = cni.ParseResult([]byte(`{"cniVersion":"1.1.0","ips":[{"address":"10.0.0.2/24"}],"routes":[{"dst":"10.0.0.0/8"}]}`), "")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := res.Encode("0.4.0")
	for _, key := range []string{`"interface"`, `"table"`, `"scope"`, `"mtu"`, `"gw"`, `"gateway"`} {
		if strings.Contains(string(got), key) {
			t.Errorf("%s printed although absent: %s", key, got)
		}
	}
}

func TestResultEncodeErrors(t *testing.T) {
	noIP := &cni.Result{CNIVersion: "1.1.0", Interfaces: []*cni.Interface{{Name: "eth0"}}}
	for _, v := range []string{"0.1.0", "0.2.0", ""} {
		_, err := noIP.Encode(v)
		if err == nil || err.Error() != "cannot convert: no valid IP addresses" {
			t.Errorf("Encode(%q) of an IP-less result: %v", v, err)
		}
	}
	_, err := noIP.Encode("1.2.0")
	if err == nil || err.Error() != "no converter for CNI result version 1.1.0 to 1.2.0" {
		t.Errorf("Encode(1.2.0): %v", err)
	}
	// A result built in code without a version names the current one as source.
	_, err = (&cni.Result{}).Encode("3")
	if err == nil || err.Error() != "no converter for CNI result version 1.1.0 to 3" {
		t.Errorf("Encode(3): %v", err)
	}

	// Content no version can print is an error, not a panic or garbage.
	v4 := cni.IPConfig{Address: mustCIDR(t, "10.0.0.2/24")}
	bad := map[string]*cni.Result{
		"nil interface":      {Interfaces: []*cni.Interface{nil}},
		"nil ip":             {IPs: []*cni.IPConfig{nil}},
		"nil route":          {IPs: []*cni.IPConfig{&v4}, Routes: []*cni.Route{nil}},
		"ip without address": {IPs: []*cni.IPConfig{{}}},
		"non-canonical mask": {IPs: []*cni.IPConfig{{Address: netIPNet("10.0.0.2", []byte{255, 0, 255, 0})}}},
		"route without dst":  {IPs: []*cni.IPConfig{&v4}, Routes: []*cni.Route{{}}},
		"3-byte gateway":     {IPs: []*cni.IPConfig{{Address: v4.Address, Gateway: []byte{1, 2, 3}}}},
	}
	for name, r := range bad {
		for _, v := range conversionTargets[:8] {
			if out, err := r.Encode(v); err == nil {
				t.Errorf("%s: Encode(%q) printed %s", name, v, out)
			}
		}
	}
}

func TestParseResult(t *testing.T) {
	t.Run("no cniVersion takes the request version", func(t *testing.T) {
		for _, v := range cni.AllVersions {
			res, err := cni.ParseResult([]byte(`{"ips":[{"address":"10.0.0.2/24"}],"ip4":{"ip":"10.0.0.2/24"}}`), v)
			if err != nil {
				t.Fatalf("%s: %v", v, err)
			}
			if res.CNIVersion != v || len(res.IPs) != 1 {
				t.Errorf("%s: got version %q with %d IPs", v, res.CNIVersion, len(res.IPs))
			}
		}
		res, err := cni.ParseResult([]byte(`{"ip4":{"ip":"10.0.0.2/24"}}`), "")
		if err != nil || res.CNIVersion != "0.1.0" {
			t.Errorf("no version anywhere: %v, %v", res, err)
		}
		res, err = cni.ParseResult([]byte(`null`), "1.0.0")
		if err != nil || res.CNIVersion != "1.0.0" || len(res.IPs) != 0 {
			t.Errorf("literal null: %+v, %v", res, err)
		}
	})
	t.Run("0.3.0 reads ip as well as ips", func(t *testing.T) {
		res, err := cni.ParseResult([]byte(`{"cniVersion":"0.3.0","ip":[{"version":"4","address":"10.0.0.2/24"}]}`), "")
		if err != nil || len(res.IPs) != 1 {
			t.Fatalf("ip list: %+v, %v", res, err)
		}
		res, err = cni.ParseResult([]byte(`{"cniVersion":"0.3.0","ips":[{"address":"10.0.0.3/24"}],"ip":[{"address":"10.0.0.2/24"}]}`), "")
		if err != nil || len(res.IPs) != 1 || res.IPs[0].Address.IP.String() != "10.0.0.3" {
			t.Fatalf("ips wins over ip: %+v, %v", res, err)
		}
		out, _ := res.Encode("0.3.0")
		if !strings.Contains(string(out), `"ips":[`) {
			t.Errorf("0.3.0 is printed with ips: %s", out)
		}
		// Only 0.3.0 had the "ip" spelling.
		res, err = cni.ParseResult([]byte(`{"cniVersion":"0.3.1","ip":[{"version":"4","address":"10.0.0.2/24"}]}`), "")
		if err != nil || len(res.IPs) != 0 {
			t.Errorf("0.3.1 ip list: %+v, %v", res, err)
		}
	})
	t.Run("0.3.x/0.4.0 version field derived when absent", func(t *testing.T) {
		res, err := cni.ParseResult([]byte(`{"cniVersion":"0.4.0","ips":[{"address":"2001:db8::1/64"}]}`), "")
		if err != nil {
			t.Fatal(err)
		}
		out, _ := res.Encode("0.4.0")
		if !strings.Contains(string(out), `"version":"6"`) {
			t.Errorf("got %s", out)
		}
	})

	bad := []struct{ name, json, msg string }{
		{"not JSON", `{`, "cannot decode CNI result"},
		{"unknown version", `{"cniVersion":"1.2.0"}`, `unsupported CNI result version "1.2.0"`},
		{"bad address", `{"cniVersion":"1.1.0","ips":[{"address":"10.0.0.300/24"}]}`, "ips[0]"},
		{"address without prefix", `{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.3"}]}`, "ips[0]"},
		{"bad gateway", `{"cniVersion":"1.1.0","ips":[{"address":"10.0.0.3/24","gateway":"x"}]}`, "gateway"},
		{"bad route", `{"cniVersion":"1.1.0","routes":[{"dst":"10.0.0.0"}]}`, "route dst"},
		{"route without dst", `{"cniVersion":"0.4.0","routes":[{"gw":"10.0.0.1"}]}`, "route dst"},
		{"null interface", `{"cniVersion":"1.1.0","interfaces":[null]}`, "interfaces[0] is null"},
		{"null 0.4.0 interface", `{"cniVersion":"0.4.0","interfaces":[null]}`, "interfaces[0] is null"},
		{"null route", `{"cniVersion":"0.3.1","routes":[null]}`, "routes[0] is null"},
		{"null 0.2.0 route", `{"cniVersion":"0.2.0","ip4":{"ip":"10.0.0.2/24","routes":[null]}}`, "ip4.routes[0] is null"},
		{"version contradicts address", `{"cniVersion":"0.4.0","ips":[{"version":"4","address":"2001:db8::1/64"}]}`, `version "4" does not match`},
		{"version neither 4 nor 6", `{"cniVersion":"0.3.1","ips":[{"version":"5","address":"10.0.0.1/8"}]}`, `version "5"`},
		{"ip4 holding IPv6", `{"cniVersion":"0.2.0","ip4":{"ip":"2001:db8::1/64"}}`, "ip4: address 2001:db8::1/64 is not IPv4"},
		{"ip6 holding IPv4", `{"cniVersion":"0.1.0","ip6":{"ip":"10.0.0.1/8"}}`, "is not IPv6"},
		{"ip4 route of the other family", `{"cniVersion":"0.2.0","ip4":{"ip":"10.0.0.2/24","routes":[{"dst":"::/0"}]}}`, "ip4.routes[0]: dst ::/0 is not IPv4"},
		{"interface index not a number", `{"cniVersion":"1.1.0","ips":[{"address":"10.0.0.2/24","interface":"0"}]}`, "cannot decode"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			res, err := cni.ParseResult([]byte(tt.json), "1.1.0")
			if err == nil {
				t.Fatalf("accepted: %+v", res)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not mention %q", err, tt.msg)
			}
			want := cni.ErrDecodingFailure
			if tt.name == "unknown version" {
				want = cni.ErrIncompatibleCNIVersion
			}
			if cni.Code(err) != want {
				t.Errorf("code %d, want %d", cni.Code(err), want)
			}
		})
	}
}

func TestResultJSONRoundTrip(t *testing.T) {
	// Result embedded in another struct (e.g. a cache file) marshals and
	// unmarshals through its own version.
	type cache struct {
		Result *cni.Result `json:"result"`
	}
	in := cache{Result: &cni.Result{CNIVersion: "0.4.0",
		IPs:    []*cni.IPConfig{{Interface: cni.Int(0), Address: mustCIDR(t, "10.0.0.2/24"), Gateway: []byte{10, 0, 0, 1}}},
		Routes: []*cni.Route{{Dst: mustCIDR(t, "0.0.0.0/0"), Table: cni.Int(0)}}}}
	data, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"result":{"cniVersion":"0.4.0","ips":[{"version":"4","interface":0,"address":"10.0.0.2/24","gateway":"10.0.0.1"}],"routes":[{"dst":"0.0.0.0/0","table":0}],"dns":{}}}`
	if !jsonEqual(t, data, []byte(want)) {
		t.Fatalf("got %s\nwant %s", data, want)
	}
	var out cache
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	data2, _ := json.Marshal(out)
	if string(data2) != string(data) {
		t.Errorf("round trip: %s vs %s", data2, data)
	}
	ipc, err := json.Marshal(in.Result.IPs[0])
	if err != nil || string(ipc) != `{"interface":0,"address":"10.0.0.2/24","gateway":"10.0.0.1"}` {
		t.Errorf("IPConfig JSON: %s, %v", ipc, err)
	}
	var back cni.IPConfig
	if err := json.Unmarshal(ipc, &back); err != nil || back.Address.String() != "10.0.0.2/24" || *back.Interface != 0 {
		t.Errorf("IPConfig back: %+v, %v", back, err)
	}
}

func TestResultPrintIsIndentedEncode(t *testing.T) {
	res := &cni.Result{CNIVersion: "1.1.0", IPs: []*cni.IPConfig{{Address: mustCIDR(t, "10.0.0.2/24")}}}
	out, err := res.Print("1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	want := "{\n    \"cniVersion\": \"1.0.0\",\n    \"ips\": [\n        {\n            \"address\": \"10.0.0.2/24\"\n        }\n    ]\n}\n"
	if string(out) != want {
		t.Errorf("got %q want %q", out, want)
	}
}

func TestConvertTo(t *testing.T) {
	res, err := cni.ParseResult([]byte(conversionSources[0].json), "")
	if err != nil {
		t.Fatal(err)
	}
	down, err := res.ConvertTo("0.2.0")
	if err != nil {
		t.Fatal(err)
	}
	if down.CNIVersion != "0.2.0" || len(down.IPs) != 2 || len(down.Interfaces) != 0 {
		t.Errorf("ConvertTo(0.2.0) = %+v", down)
	}
	for _, rt := range down.Routes {
		if rt.MTU != 0 || rt.Table != nil || rt.Priority != 0 {
			t.Errorf("0.2.0 route kept 1.1.0 fields: %s", rt)
		}
	}
	if res.CNIVersion != "1.1.0" || len(res.Interfaces) != 2 {
		t.Errorf("ConvertTo changed its receiver: %+v", res)
	}
}

func TestParsePrevResult(t *testing.T) {
	ok := []struct{ conf, prev string }{
		{"1.1.0", `{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.2/24"}]}`},
		{"1.0.0", `{"cniVersion":"1.1.0","ips":[{"address":"10.0.0.2/24"}]}`},
		{"0.4.0", `{"cniVersion":"0.3.1","ips":[{"version":"4","address":"10.0.0.2/24"}]}`},
		{"0.2.0", `{"cniVersion":"0.1.0","ip4":{"ip":"10.0.0.2/24"}}`},
		{"1.1.0", `{"ips":[{"address":"10.0.0.2/24"}]}`},
		{"", `{"ip4":{"ip":"10.0.0.2/24"}}`},
	}
	for _, tt := range ok {
		res, err := cni.ParsePrevResult(json.RawMessage(tt.prev), tt.conf)
		if err != nil || res == nil || len(res.IPs) != 1 {
			t.Errorf("conf %q prev %s: %+v, %v", tt.conf, tt.prev, res, err)
		}
		// The reference accepts it too.
		if err := refParsePrev(tt.conf, tt.prev); err != nil {
			t.Errorf("reference rejects conf %q prev %s: %v", tt.conf, tt.prev, err)
		}
	}
	for _, raw := range []string{"", "null"} {
		if res, err := cni.ParsePrevResult(json.RawMessage(raw), "1.1.0"); res != nil || err != nil {
			t.Errorf("%q: %v, %v", raw, res, err)
		}
	}
	bad := []struct {
		conf, prev string
		code       uint
		msg        string
	}{
		{"1.1.0", `{"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.0.0.2/24"}]}`, 1, "prevResult version does not match the config version"},
		{"0.4.0", `{"cniVersion":"0.2.0","ip4":{"ip":"10.0.0.2/24"}}`, 1, "prevResult version does not match the config version"},
		{"0.2.0", `{"cniVersion":"1.0.0"}`, 1, "prevResult version does not match the config version"},
		{"1.1.0", `{"cniVersion":"7.0.0"}`, 1, "could not parse prevResult"},
		{"1.1.0", `{"cniVersion":"1.1.0","ips":[{"address":"nope"}]}`, 6, "could not parse prevResult"},
		{"1.1.0", `[1,2]`, 6, "could not parse prevResult"},
	}
	for _, tt := range bad {
		_, err := cni.ParsePrevResult(json.RawMessage(tt.prev), tt.conf)
		e := cni.AsError(err, 0)
		if e == nil || e.Code != tt.code || e.Msg != tt.msg {
			t.Errorf("conf %q prev %s: got %#v, want code %d %q", tt.conf, tt.prev, e, tt.code, tt.msg)
		}
		if err := refParsePrev(tt.conf, tt.prev); err == nil {
			t.Errorf("reference accepts conf %q prev %s", tt.conf, tt.prev)
		}
	}
}

func refParsePrev(confVersion, prev string) error {
	conf := &reftypes.PluginConf{CNIVersion: confVersion}
	if err := json.Unmarshal([]byte(prev), &conf.RawPrevResult); err != nil {
		return err
	}
	return refversion.ParsePrevResult(conf)
}

// Where knit deliberately differs from the reference library, each case
// spelled out with both answers so a change on either side shows up here.
func TestResultDeliberateDivergences(t *testing.T) {
	t.Run("0.1/0.2 routes carry only dst and gw", func(t *testing.T) {
		src := `{"cniVersion":"0.2.0","ip4":{"ip":"10.0.0.2/24","routes":[{"dst":"0.0.0.0/0","gw":"10.0.0.1","mtu":1400}]}}`
		ref, _ := refConvert(t, []byte(src), "0.2.0")
		if !strings.Contains(string(ref), `"mtu":1400`) {
			t.Errorf("reference changed: %s", ref)
		}
		res, err := cni.ParseResult([]byte(src), "")
		if err != nil {
			t.Fatal(err)
		}
		got, _ := res.Encode("0.2.0")
		if strings.Contains(string(got), "mtu") {
			t.Errorf("knit printed a 0.2.0 route field the spec does not have: %s", got)
		}
		// Up-converting keeps it, as the reference does.
		up, _ := res.Encode("1.1.0")
		refUp, _ := refConvert(t, []byte(src), "1.1.0")
		if !jsonEqual(t, up, refUp) {
			t.Errorf("to 1.1.0: %s vs reference %s", up, refUp)
		}
	})
	t.Run("0.3.0 ip list", func(t *testing.T) {
		src := `{"cniVersion":"0.3.0","ip":[{"version":"4","address":"10.0.0.2/24"}]}`
		ref, _ := refConvert(t, []byte(src), "0.3.0")
		res, _ := cni.ParseResult([]byte(src), "")
		got, _ := res.Encode("0.3.0")
		if strings.Contains(string(ref), "10.0.0.2") || !strings.Contains(string(got), `"ips":[{"version":"4","address":"10.0.0.2/24"}]`) {
			t.Errorf("knit %s reference %s", got, ref)
		}
	})
	t.Run("inconsistent families are refused", func(t *testing.T) {
		for _, src := range []string{
			`{"cniVersion":"0.4.0","ips":[{"version":"4","address":"2001:db8::2/64"}]}`,
			`{"cniVersion":"0.2.0","ip4":{"ip":"2001:db8::2/64"}}`,
			`{"cniVersion":"0.2.0","ip4":{"ip":"10.0.0.2/24","routes":[{"dst":"::/0"}]}}`,
			`{"cniVersion":"1.1.0","routes":[{"gw":"10.0.0.1"}]}`,
			`{"cniVersion":"1.1.0","interfaces":[null],"ips":[{"address":"10.0.0.2/24"}]}`,
		} {
			if _, err := refcreate.CreateFromBytes([]byte(src)); err != nil {
				t.Errorf("reference refuses %s: %v", src, err)
			}
			if _, err := cni.ParseResult([]byte(src), ""); cni.Code(err) != cni.ErrDecodingFailure {
				t.Errorf("%s: %v", src, err)
			}
		}
	})
}
