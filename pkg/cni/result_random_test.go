package cni_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/knit-cni/knit/pkg/cni"
)

// randomResultJSON writes a well-formed result of version v with random
// content: any mix of families, optional fields present or not, zero values
// that must still be printed (interface 0, table/scope 0).
func randomResultJSON(rng *rand.Rand, v string) string {
	addr := func(v4 bool) string {
		if v4 {
			return fmt.Sprintf("10.%d.%d.%d/%d", rng.IntN(256), rng.IntN(256), rng.IntN(256), 8+rng.IntN(25))
		}
		return fmt.Sprintf("2001:db8:%x::%x/%d", rng.IntN(65536), rng.IntN(65536), 48+rng.IntN(81))
	}
	ip := func(v4 bool) string { a := addr(v4); return a[:strings.IndexByte(a, '/')] }
	maybe := func(p float64) bool { return rng.Float64() < p }
	var parts []string
	if v != "" || maybe(0.5) {
		parts = append(parts, fmt.Sprintf(`"cniVersion":%q`, v))
	}
	var dns []string
	if maybe(0.5) {
		dns = append(dns, fmt.Sprintf(`"nameservers":[%q]`, ip(maybe(0.5))))
	}
	if maybe(0.3) {
		dns = append(dns, `"domain":"example.org"`)
	}
	if maybe(0.3) {
		dns = append(dns, `"search":["a","b"]`, `"options":["ndots:3"]`)
	}
	if len(dns) > 0 || maybe(0.5) {
		parts = append(parts, `"dns":{`+strings.Join(dns, ",")+`}`)
	}
	route := func(v4 bool, full bool) string {
		fields := []string{fmt.Sprintf(`"dst":%q`, addr(v4))}
		if maybe(0.5) {
			fields = append(fields, fmt.Sprintf(`"gw":%q`, ip(v4)))
		}
		if full {
			for _, k := range []string{"mtu", "advmss", "priority", "table", "scope"} {
				if maybe(0.4) {
					fields = append(fields, fmt.Sprintf(`%q:%d`, k, rng.IntN(3)*rng.IntN(2000)))
				}
			}
		}
		return "{" + strings.Join(fields, ",") + "}"
	}
	switch v {
	case "", "0.1.0", "0.2.0":
		for _, fam := range []string{"ip4", "ip6"} {
			if maybe(0.6) {
				x := fmt.Sprintf(`"ip":%q`, addr(fam == "ip4"))
				if maybe(0.5) {
					x += fmt.Sprintf(`,"gateway":%q`, ip(fam == "ip4"))
				}
				var rts []string
				for n := rng.IntN(3); n > 0; n-- {
					rts = append(rts, route(fam == "ip4", false))
				}
				if len(rts) > 0 {
					x += `,"routes":[` + strings.Join(rts, ",") + `]`
				}
				parts = append(parts, fmt.Sprintf(`%q:{%s}`, fam, x))
			}
		}
	default:
		old := v < "1"
		nIf := rng.IntN(3)
		var ifs []string
		for i := 0; i < nIf; i++ {
			f := []string{fmt.Sprintf(`"name":"eth%d"`, i)}
			if maybe(0.5) {
				f = append(f, `"mac":"aa:bb:cc:dd:ee:ff"`)
			}
			if maybe(0.5) {
				f = append(f, `"sandbox":"/var/run/netns/x"`)
			}
			if !old {
				if maybe(0.3) {
					f = append(f, fmt.Sprintf(`"mtu":%d`, rng.IntN(2)*1500))
				}
				if maybe(0.2) {
					f = append(f, `"socketPath":"/run/s.sock"`, `"pciID":"0000:00:01.0"`)
				}
			}
			ifs = append(ifs, "{"+strings.Join(f, ",")+"}")
		}
		if nIf > 0 || maybe(0.2) {
			parts = append(parts, `"interfaces":[`+strings.Join(ifs, ",")+`]`)
		}
		var ips []string
		for n := rng.IntN(4); n > 0; n-- {
			v4 := maybe(0.5)
			f := []string{fmt.Sprintf(`"address":%q`, addr(v4))}
			if old {
				f = append(f, map[bool]string{true: `"version":"4"`, false: `"version":"6"`}[v4])
			}
			if maybe(0.5) {
				f = append(f, fmt.Sprintf(`"interface":%d`, rng.IntN(3)))
			}
			if maybe(0.5) {
				f = append(f, fmt.Sprintf(`"gateway":%q`, ip(v4)))
			}
			ips = append(ips, "{"+strings.Join(f, ",")+"}")
		}
		if len(ips) > 0 {
			parts = append(parts, `"ips":[`+strings.Join(ips, ",")+`]`)
		}
		var rts []string
		for n := rng.IntN(4); n > 0; n-- {
			rts = append(rts, route(maybe(0.5), true))
		}
		if len(rts) > 0 {
			parts = append(parts, `"routes":[`+strings.Join(rts, ",")+`]`)
		}
	}
	rng.Shuffle(len(parts), func(i, j int) { parts[i], parts[j] = parts[j], parts[i] })
	return "{" + strings.Join(parts, ",") + "}"
}

// Thousands of random well-formed results of every version, converted to
// every version by knit and by the reference, must agree (same JSON or the
// same error), except where knit deliberately differs: inside 0.1.0/0.2.0
// knit prints only dst and gw of a route, as those specs define them.
func TestRandomResultsMatchReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	n := 3000
	if testing.Short() {
		n = 300
	}
	sources := append([]string{""}, cni.AllVersions...)
	for i := 0; i < n; i++ {
		src := sources[i%len(sources)]
		data := randomResultJSON(rng, src)
		res, err := cni.ParseResult([]byte(data), "")
		if err != nil {
			t.Fatalf("%s: %v", data, err)
		}
		if _, err := res.Encode(res.CNIVersion); err != nil {
			t.Fatalf("%s: own version: %v", data, err)
		}
		for _, to := range conversionTargets {
			oldPair := (src == "" || src == "0.1.0" || src == "0.2.0") && (to == "" || to == "0.1.0" || to == "0.2.0")
			if oldPair && strings.Contains(data, `"routes"`) {
				continue
			}
			want, refErr := refConvert(t, []byte(data), to)
			got, err := res.Encode(to)
			if refErr != nil {
				if err == nil || err.Error() != refErr.Error() {
					t.Fatalf("%s to %q: knit %v %s, reference %v", data, to, err, got, refErr)
				}
				continue
			}
			if err != nil {
				t.Fatalf("%s to %q: knit %v, reference %s", data, to, err, want)
			}
			if !jsonEqual(t, got, want) {
				t.Fatalf("%s to %q:\nknit      %s\nreference %s", data, to, got, want)
			}
		}
	}
}
