// Package sysctl reads and writes kernel parameters under /proc/sys/net.
//
// /proc/sys/net shows the network namespace of the thread that opens the
// file, so these functions act on the calling thread's namespace: call them
// directly for the plugin's own (host) namespace, or inside netns.Do for a
// container's. Writes happen only when the value differs, which keeps
// repeated ADDs cheap and avoids needless netlink/proc churn.
//
// Keys are given relative to /proc/sys, in dotted ("net.ipv4.ip_forward")
// or slashed ("net/ipv4/ip_forward") form. Interface names may contain dots,
// so for per-interface keys use IfaceKey, which builds the slashed form.
package sysctl

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Root is where the keys live. Tests may point it elsewhere.
var Root = "/proc/sys"

// path turns a key into a file path under Root, refusing keys outside net.
func path(key string) (string, error) {
	k := key
	if !strings.Contains(k, "/") {
		k = strings.ReplaceAll(k, ".", "/")
	}
	k = strings.TrimPrefix(k, "/")
	clean := filepath.Clean(k)
	if clean != k || !strings.HasPrefix(clean, "net/") || strings.Contains(clean, "..") {
		return "", fmt.Errorf("sysctl key %q is not a key under net (want e.g. net.ipv4.ip_forward)", key)
	}
	return filepath.Join(Root, clean), nil
}

// IfaceKey returns the slashed key for a per-interface setting, e.g.
// IfaceKey("ipv6", "conf", "eth0", "accept_dad") =
// "net/ipv6/conf/eth0/accept_dad". Interface names may contain dots, which
// the dotted form cannot express.
func IfaceKey(family, table, ifname, name string) string {
	return "net/" + family + "/" + table + "/" + ifname + "/" + name
}

// Get returns the value of key, without the trailing newline.
func Get(key string) (string, error) {
	p, err := path(key)
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return "", fmt.Errorf("reading sysctl %s: %w", key, err)
	}
	return string(bytes.TrimRight(b, "\n")), nil
}

// Set writes value to key unless it already holds it, and reports whether
// it wrote.
func Set(key, value string) (bool, error) {
	cur, err := Get(key)
	if err != nil {
		return false, err
	}
	if cur == value {
		return false, nil
	}
	p, _ := path(key)
	if err := os.WriteFile(p, []byte(value), 0o644); err != nil {
		return false, fmt.Errorf("setting sysctl %s=%s (was %s): %w", key, value, cur, err)
	}
	return true, nil
}

// IsNotExist reports whether err says the key does not exist, e.g. an IPv6
// key when IPv6 is disabled or a per-interface key of a missing interface.
func IsNotExist(err error) bool { return errors.Is(err, os.ErrNotExist) }

// Setting is one key and the value it should have.
type Setting struct {
	Key   string
	Value string
	// Optional settings are skipped when the key does not exist.
	Optional bool
}

// Apply sets each setting in order (each written only if different) and
// stops at the first error.
func Apply(settings ...Setting) error {
	for _, s := range settings {
		if _, err := Set(s.Key, s.Value); err != nil {
			if s.Optional && IsNotExist(err) {
				continue
			}
			return err
		}
	}
	return nil
}

// EnableForwarding turns on IPv4 and/or IPv6 forwarding in the calling
// thread's namespace, writing only what is not already on.
//
// It first asks over netlink (one RTM_GETNETCONF per family), which stays
// cheap with thousands of namespaces on the machine, and goes to /proc/sys
// only to write or when netlink cannot answer.
func EnableForwarding(v4, v6 bool) error {
	if v4 && !forwardingAlreadyOn(unix.AF_INET) {
		if _, err := Set("net/ipv4/ip_forward", "1"); err != nil {
			return err
		}
	}
	if v6 && !forwardingAlreadyOn(unix.AF_INET6) {
		if _, err := Set("net/ipv6/conf/all/forwarding", "1"); err != nil {
			return err
		}
	}
	return nil
}

// forwardingAlreadyOn reports whether netlink says forwarding is on; when
// Root is not the real /proc/sys (tests), it never does.
func forwardingAlreadyOn(family uint8) bool {
	if Root != "/proc/sys" {
		return false
	}
	on, err := forwardingOn(family)
	return err == nil && on
}
