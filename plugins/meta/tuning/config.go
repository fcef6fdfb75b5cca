package tuning

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/knit-cni/knit/pkg/cni"
)

// Default locations, the reference plugin's.
const (
	DefaultDataDir   = "/run/cni/tuning"
	DefaultAllowlist = "/etc/cni/tuning/allowlist.conf"
)

// AllowlistPath is the allow-list file; when it exists, every sysctl key
// must match one of its regular expressions (one per line).
var AllowlistPath = DefaultAllowlist

// Config is the tuning plugin's configuration.
type Config struct {
	cni.NetConf
	DataDir  string            `json:"dataDir,omitempty"`
	SysCtl   map[string]string `json:"sysctl"`
	Mac      string            `json:"mac,omitempty"`
	Promisc  bool              `json:"promisc,omitempty"`
	Mtu      int               `json:"mtu,omitempty"`
	TxQLen   *int              `json:"txQLen,omitempty"`
	Allmulti *bool             `json:"allmulti,omitempty"`

	RuntimeConfig struct {
		Mac string `json:"mac,omitempty"`
	} `json:"runtimeConfig,omitempty"`
	Args *struct {
		A *cniArgs `json:"cni"`
	} `json:"args,omitempty"`

	// mac is Mac parsed; sysctls are the keys resolved for the interface.
	mac     net.HardwareAddr
	sysctls []setting
}

// cniArgs are the overrides accepted in args.cni.
type cniArgs struct {
	SysCtl   *map[string]string `json:"sysctl"`
	Mac      *string            `json:"mac,omitempty"`
	Promisc  *bool              `json:"promisc,omitempty"`
	Mtu      *int               `json:"mtu,omitempty"`
	TxQLen   *int               `json:"txQLen,omitempty"`
	Allmulti *bool              `json:"allmulti,omitempty"`
}

// setting is one sysctl: the key as configured, the slashed path under
// /proc/sys it resolves to, and the value.
type setting struct {
	Given, Key, Value string
}

// changesLink reports whether the config changes any link attribute.
func (c *Config) changesLink() bool {
	return c.mac != nil || c.Mtu != 0 || c.Promisc || c.Allmulti != nil || c.TxQLen != nil
}

// parseConfig decodes and validates the configuration for the interface
// ifname, applying CNI_ARGS, runtimeConfig and args overrides in the
// reference's order. It changes nothing.
func parseConfig(stdin []byte, envArgs, ifname string) (*Config, error) {
	c := &Config{}
	if err := json.Unmarshal(stdin, c); err != nil {
		return nil, cni.NewError(cni.ErrDecodingFailure, "failed to parse tuning configuration", err.Error())
	}
	if err := noDuplicateKeys(stdin); err != nil {
		return nil, err
	}
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if envArgs != "" {
		a, err := cni.LoadArgs(envArgs, "MAC")
		if err != nil {
			return nil, err
		}
		if m, ok := a.Get("MAC"); ok && m != "" {
			c.Mac = m
		}
	}
	if c.RuntimeConfig.Mac != "" {
		c.Mac = c.RuntimeConfig.Mac
	}
	if c.Args != nil && c.Args.A != nil {
		a := c.Args.A
		if a.SysCtl != nil {
			if c.SysCtl == nil {
				c.SysCtl = map[string]string{}
			}
			for k, v := range *a.SysCtl {
				c.SysCtl[k] = v
			}
		}
		if a.Mac != nil {
			c.Mac = *a.Mac
		}
		if a.Promisc != nil {
			c.Promisc = *a.Promisc
		}
		if a.Mtu != nil {
			c.Mtu = *a.Mtu
		}
		if a.TxQLen != nil {
			c.TxQLen = a.TxQLen
		}
		if a.Allmulti != nil {
			c.Allmulti = a.Allmulti
		}
	}
	if c.Mac != "" {
		m, err := net.ParseMAC(c.Mac)
		if err != nil {
			return nil, cni.NewError(cni.ErrInvalidNetworkConfig, fmt.Sprintf("invalid mac %q", c.Mac), err.Error())
		}
		c.mac = m
	}
	if c.Mtu < 0 {
		return nil, cni.Errorf(cni.ErrInvalidNetworkConfig, "invalid mtu %d: give a positive MTU or leave it out", c.Mtu)
	}
	if c.TxQLen != nil && *c.TxQLen < 0 {
		return nil, cni.Errorf(cni.ErrInvalidNetworkConfig, "invalid txQLen %d: give a non-negative queue length", *c.TxQLen)
	}
	if err := c.resolveSysctls(ifname); err != nil {
		return nil, err
	}
	return c, nil
}

// resolveSysctls turns the configured keys into paths for ifname, checks
// they are network keys, distinct, and allowed by the allow-list.
func (c *Config) resolveSysctls(ifname string) error {
	allow, err := readAllowlist(AllowlistPath)
	if err != nil {
		return err
	}
	given := make([]string, 0, len(c.SysCtl))
	for k := range c.SysCtl {
		given = append(given, k)
	}
	sort.Strings(given)
	seen := map[string]string{}
	for _, g := range given {
		key, err := ResolveKey(g, ifname)
		if err != nil {
			return cni.NewError(cni.ErrInvalidNetworkConfig, "invalid sysctl key", err.Error())
		}
		if prev, dup := seen[key]; dup {
			return cni.NewError(cni.ErrInvalidNetworkConfig, "duplicated sysctl keys are not allowed",
				fmt.Sprintf("%q and %q both name %s", prev, g, key))
		}
		seen[key] = g
		if allow != nil && !matchesAny(g, allow) {
			return cni.NewError(cni.ErrInvalidNetworkConfig, fmt.Sprintf("sysctl %s is not allowed", g),
				fmt.Sprintf("%s allows only keys matching: %s", AllowlistPath, strings.Join(patterns(allow), ", ")))
		}
		c.sysctls = append(c.sysctls, setting{Given: g, Key: key, Value: c.SysCtl[g]})
	}
	return nil
}

// ResolveKey turns a sysctl key in dotted ("net.ipv4.conf.IFNAME.arp_filter")
// or slashed form into its slashed path under /proc/sys, with every IFNAME
// component replaced by ifname (which may itself contain dots). Keys outside
// net/ are refused: only the container's own network namespace is tuned.
func ResolveKey(key, ifname string) (string, error) {
	k := key
	if !strings.Contains(k, "/") {
		k = strings.ReplaceAll(k, ".", "/")
	}
	parts := strings.Split(k, "/")
	for i, p := range parts {
		if p == "IFNAME" {
			parts[i] = ifname
		}
		if p == ".." || p == "." || p == "" {
			return "", fmt.Errorf("sysctl key %q has an empty, . or .. component", key)
		}
	}
	k = strings.Join(parts, "/")
	if path.Clean(k) != k || !strings.HasPrefix(k, "net/") || strings.ContainsAny(k, "\x00") {
		return "", fmt.Errorf("sysctl key %q is not a network key: only keys under net (e.g. net.ipv4.conf.IFNAME.arp_notify) can be tuned", key)
	}
	return k, nil
}

// readAllowlist reads the allow-list's regular expressions; nil (no list)
// when the file does not exist.
func readAllowlist(file string) ([]*regexp.Regexp, error) {
	data, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, cni.NewError(cni.ErrIOFailure, "cannot read the sysctl allow-list", err.Error())
	}
	out := []*regexp.Regexp{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		re, err := regexp.Compile(line)
		if err != nil {
			return nil, cni.NewError(cni.ErrInvalidNetworkConfig, "invalid regular expression in "+file, err.Error())
		}
		out = append(out, re)
	}
	return out, nil
}

func matchesAny(s string, res []*regexp.Regexp) bool {
	for _, re := range res {
		if re.MatchString(s) {
			return true
		}
	}
	return false
}

func patterns(res []*regexp.Regexp) []string {
	var out []string
	for _, re := range res {
		out = append(out, re.String())
	}
	return out
}

// noDuplicateKeys refuses a "sysctl" object (top level or in args.cni) that
// names a key twice, which a map decode would silently collapse.
func noDuplicateKeys(stdin []byte) error {
	var top struct {
		SysCtl json.RawMessage `json:"sysctl"`
		Args   *struct {
			A *struct {
				SysCtl json.RawMessage `json:"sysctl"`
			} `json:"cni"`
		} `json:"args"`
	}
	if err := json.Unmarshal(stdin, &top); err != nil {
		return cni.NewError(cni.ErrDecodingFailure, "failed to parse tuning configuration", err.Error())
	}
	objs := []json.RawMessage{top.SysCtl}
	if top.Args != nil && top.Args.A != nil {
		objs = append(objs, top.Args.A.SysCtl)
	}
	for _, raw := range objs {
		if len(raw) == 0 || string(raw) == "null" {
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		if _, err := dec.Token(); err != nil { // {
			return cni.NewError(cni.ErrDecodingFailure, "sysctl must be an object of key: value strings", err.Error())
		}
		seen := map[string]bool{}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return cni.NewError(cni.ErrDecodingFailure, "sysctl must be an object of key: value strings", err.Error())
			}
			k, _ := tok.(string)
			if seen[k] {
				return cni.NewError(cni.ErrInvalidNetworkConfig, "duplicated sysctl keys are not allowed", fmt.Sprintf("%q appears twice", k))
			}
			seen[k] = true
			var v json.RawMessage
			if err := dec.Decode(&v); err != nil {
				return cni.NewError(cni.ErrDecodingFailure, "sysctl must be an object of key: value strings", err.Error())
			}
		}
	}
	return nil
}
