package hostlocal

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	"github.com/knit-cni/knit/internal/ipam/ranges"
	"github.com/knit-cni/knit/pkg/cni"
)

// DefaultDataDir is where allocations live unless ipam.dataDir says otherwise.
const DefaultDataDir = "/var/lib/cni/networks"

// Config is a host-local request's configuration after defaults, runtime
// ranges and requested addresses are applied and everything is validated.
type Config struct {
	Name       string
	CNIVersion string
	// Sets are the range sets, runtimeConfig.ipRanges first, then the legacy
	// top-level range, then ipam.ranges. One address is allocated per set.
	Sets       []ranges.Set
	Routes     []*cni.Route
	DataDir    string
	ResolvConf string
	// Requested holds, per set index, the address asked for (CNI_ARGS IP=,
	// args.cni.ips, runtimeConfig.ips); sets without a request are absent.
	Requested map[int]netip.Addr
}

type ipamJSON struct {
	Ranges     [][]json.RawMessage `json:"ranges"`
	Routes     []*cni.Route        `json:"routes"`
	DataDir    string              `json:"dataDir"`
	ResolvConf string              `json:"resolvConf"`
}

type confJSON struct {
	CNIVersion    string          `json:"cniVersion"`
	Name          string          `json:"name"`
	IPAM          json.RawMessage `json:"ipam"`
	RuntimeConfig struct {
		IPs      []string            `json:"ips"`
		IPRanges [][]json.RawMessage `json:"ipRanges"`
	} `json:"runtimeConfig"`
	Args struct {
		CNI struct {
			IPs []string `json:"ips"`
		} `json:"cni"`
	} `json:"args"`
}

func invalid(format string, args ...any) *cni.Error {
	return cni.Errorf(cni.ErrInvalidNetworkConfig, format, args...)
}

func parseSets(key string, raw [][]json.RawMessage) ([]ranges.Set, error) {
	sets := make([]ranges.Set, 0, len(raw))
	for i, rs := range raw {
		set := make(ranges.Set, len(rs))
		for j, r := range rs {
			if err := json.Unmarshal(r, &set[j]); err != nil {
				return nil, invalid("%s[%d][%d]: %s", key, i, j, cni.AsError(err, cni.ErrInvalidNetworkConfig).Msg)
			}
		}
		sets = append(sets, set)
	}
	return sets, nil
}

// LoadConfig parses and validates stdin config and CNI_ARGS. Every error is
// code 7 (or 4 for malformed CNI_ARGS) and names what is wrong.
func LoadConfig(data []byte, envArgs string) (*Config, error) {
	var c confJSON
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, cni.NewError(cni.ErrDecodingFailure, "cannot decode the network config", err.Error())
	}
	if len(c.IPAM) == 0 || string(c.IPAM) == "null" {
		return nil, invalid(`missing "ipam": host-local reads its ranges from the config's ipam section`)
	}
	var ij ipamJSON
	if err := json.Unmarshal(c.IPAM, &ij); err != nil {
		return nil, invalid("invalid ipam section: %v", err)
	}
	cfg := &Config{
		Name:       c.Name,
		CNIVersion: c.CNIVersion,
		Routes:     ij.Routes,
		DataDir:    ij.DataDir,
		ResolvConf: ij.ResolvConf,
	}
	if cfg.CNIVersion == "" {
		cfg.CNIVersion = cni.Version010
	}
	if cfg.DataDir == "" {
		cfg.DataDir = DefaultDataDir
	}
	for i, r := range cfg.Routes {
		if r == nil || r.Dst.IP == nil {
			return nil, invalid(`ipam.routes[%d]: every route needs a "dst"`, i)
		}
	}

	// The ranges: runtime ranges, then the legacy single range, then ranges.
	runtimeSets, err := parseSets("runtimeConfig.ipRanges", c.RuntimeConfig.IPRanges)
	if err != nil {
		return nil, err
	}
	cfg.Sets = append(cfg.Sets, runtimeSets...)
	var legacy ranges.Range
	if err := json.Unmarshal(c.IPAM, &legacy); err != nil {
		return nil, invalid("ipam: %s", cni.AsError(err, cni.ErrInvalidNetworkConfig).Msg)
	}
	if legacy.Subnet.IsValid() {
		cfg.Sets = append(cfg.Sets, ranges.Set{legacy})
	}
	sets, err := parseSets("ipam.ranges", ij.Ranges)
	if err != nil {
		return nil, err
	}
	cfg.Sets = append(cfg.Sets, sets...)
	if len(cfg.Sets) == 0 {
		return nil, invalid(`no IP ranges specified: set ipam.ranges (a list of range sets) or ipam.subnet`)
	}
	for i, s := range cfg.Sets {
		if err := s.Canonicalize(); err != nil {
			return nil, invalid("range set %d: %s", i, cni.AsError(err, cni.ErrInvalidNetworkConfig).Msg)
		}
	}
	var v4, v6 int
	for i := range cfg.Sets {
		if cfg.Sets[i].Is4() {
			v4++
		} else {
			v6++
		}
		for j := i + 1; j < len(cfg.Sets); j++ {
			if cfg.Sets[i].Overlaps(cfg.Sets[j]) {
				return nil, invalid("range set %d (%s) overlaps with range set %d (%s)", i, cfg.Sets[i], j, cfg.Sets[j])
			}
		}
	}
	if (v4 > 1 || v6 > 1) && !cni.VersionAtLeast(cfg.CNIVersion, cni.Version030) {
		return nil, invalid("cniVersion %s does not support more than one address per IP family (%d IPv4, %d IPv6 range sets): use 0.3.0 or later",
			cfg.CNIVersion, v4, v6)
	}

	// Requested addresses from every source.
	var requests []request
	if envArgs != "" {
		pairs, err := cni.ParseArgs(envArgs)
		if err != nil {
			return nil, err
		}
		for _, p := range pairs {
			if p[0] == "IP" {
				for _, ip := range strings.Split(p[1], ",") {
					requests = append(requests, request{"CNI_ARGS IP=", ip})
				}
			}
		}
	}
	for _, ip := range c.Args.CNI.IPs {
		requests = append(requests, request{"args.cni.ips", ip})
	}
	for _, ip := range c.RuntimeConfig.IPs {
		requests = append(requests, request{"runtimeConfig.ips", ip})
	}
	if err := cfg.assignRequests(requests); err != nil {
		return nil, err
	}
	return cfg, nil
}

// request is one requested address and where it came from.
type request struct{ src, val string }

// assignRequests places each requested address in the first set containing
// it. Each set takes one address; asking for the same address twice is one
// request.
func (cfg *Config) assignRequests(requests []request) error {
	for _, req := range requests {
		src, val := req.src, req.val
		if strings.TrimSpace(val) == "" {
			continue
		}
		a, err := ranges.ParseAddr(val)
		if err != nil {
			return invalid("%s: %q is not an IP address", src, val)
		}
		idx := -1
		for i, s := range cfg.Sets {
			if s.Contains(a) {
				idx = i
				break
			}
		}
		if idx < 0 {
			return invalid("%s: requested IP %s is not in any range (%s)", src, a, cfg.describeSets())
		}
		s := cfg.Sets[idx]
		if r := s.RangeFor(a); s[r].Gateway == a {
			return invalid("%s: requested IP %s is the gateway of range %s", src, a, s[r].String())
		}
		if cfg.Requested == nil {
			cfg.Requested = map[int]netip.Addr{}
		}
		if prev, ok := cfg.Requested[idx]; ok && prev != a {
			return invalid("%s: requested IPs %s and %s both fall in range set %d (%s): one address is allocated per range set",
				src, prev, a, idx, s)
		}
		cfg.Requested[idx] = a
	}
	return nil
}

func (cfg *Config) describeSets() string {
	parts := make([]string, len(cfg.Sets))
	for i, s := range cfg.Sets {
		parts[i] = fmt.Sprintf("set %d: %s", i, s)
	}
	return strings.Join(parts, "; ")
}
