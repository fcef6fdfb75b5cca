package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/knit-cni/knit/pkg/cni"
)

// cacheKind marks the reference's versioned cache file format.
const cacheKind = "cniCacheV1"

// cacheEntry is one file under <cacheDir>/results, field for field the
// reference's format so other runtimes read ours and we read theirs.
type cacheEntry struct {
	Kind           string          `json:"kind"`
	ContainerID    string          `json:"containerId"`
	Config         []byte          `json:"config"` // base64 in JSON
	IfName         string          `json:"ifName"`
	NetworkName    string          `json:"networkName"`
	NetNS          string          `json:"netns,omitempty"`
	CNIArgs        [][2]string     `json:"cniArgs,omitempty"`
	CapabilityArgs map[string]any  `json:"capabilityArgs,omitempty"`
	Result         json.RawMessage `json:"result,omitempty"`
}

func (c *CNI) resultsDir() string { return filepath.Join(c.cacheDir, "results") }

// cachePath returns <cacheDir>/results/<net>-<cid>-<ifname>. All three must
// be valid names, which also keeps the path inside the cache directory.
func (c *CNI) cachePath(netName string, rt *RuntimeConf) (string, error) {
	if netName == "" || rt.ContainerID == "" || rt.IfName == "" {
		return "", cni.NewError(cni.ErrInvalidNetworkConfig,
			fmt.Sprintf("cache file path requires network name (%q), container ID (%q), and interface name (%q)", netName, rt.ContainerID, rt.IfName), "")
	}
	if err := validateAttachment(netName, rt); err != nil {
		return "", err
	}
	return filepath.Join(c.resultsDir(), netName+"-"+rt.ContainerID+"-"+rt.IfName), nil
}

// validateAttachment applies the spec's rules to the names of an attachment.
func validateAttachment(netName string, rt *RuntimeConf) error {
	if e := cni.ValidateContainerID(rt.ContainerID); e != nil {
		return e
	}
	if e := cni.ValidateNetworkName(netName); e != nil {
		return e
	}
	if e := cni.ValidateInterfaceName(rt.IfName); e != nil {
		return e
	}
	return nil
}

// writeCache records a successful ADD atomically (temp file + rename), so a
// reader never sees a half-written file. Like the reference it does not
// fsync (that would double the cost of an ADD); a file truncated by a crash
// is tolerated by DEL.
func (c *CNI) writeCache(list *cni.NetworkConfigList, rt *RuntimeConf, res *cni.Result) error {
	path, err := c.cachePath(list.Name, rt)
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if res != nil {
		if raw, err = json.Marshal(res); err != nil {
			return err
		}
	}
	data, err := json.Marshal(cacheEntry{
		Kind:           cacheKind,
		ContainerID:    rt.ContainerID,
		Config:         list.Bytes,
		IfName:         rt.IfName,
		NetworkName:    list.Name,
		NetNS:          rt.NetNS,
		CNIArgs:        rt.Args,
		CapabilityArgs: rt.CapabilityArgs,
		Result:         raw,
	})
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	// CreateTemp makes the file 0600, the reference's mode.
	return os.Rename(tmp.Name(), path)
}

// removeCache deletes an attachment's cache file; a missing one is fine.
func (c *CNI) removeCache(netName string, rt *RuntimeConf) error {
	path, err := c.cachePath(netName, rt)
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// readCache returns the parsed cache file, or (nil, nil) if there is none.
// A legacy file (a bare result, from libcni before cniCacheV1) comes back as
// an entry with only Result set.
func (c *CNI) readCache(netName string, rt *RuntimeConf) (*cacheEntry, error) {
	path, err := c.cachePath(netName, rt)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading cached result %s: %w", path, err)
	}
	var e cacheEntry
	if err := json.Unmarshal(data, &e); err != nil || e.Kind != cacheKind {
		return &cacheEntry{Result: data}, nil
	}
	return &e, nil
}

// cachedResult returns the cached result of an attachment converted to
// version, or nil if nothing is cached. An unreadable or unconvertible
// result is an error.
func (c *CNI) cachedResult(netName, version string, rt *RuntimeConf) (*cni.Result, error) {
	e, err := c.readCache(netName, rt)
	if err != nil || e == nil || len(e.Result) == 0 || string(e.Result) == "null" {
		return nil, err
	}
	res, err := cni.ParseResult(e.Result, version)
	if err != nil {
		return nil, cni.NewError(cni.ErrDecodingFailure, fmt.Sprintf("cannot parse cached result of network %q", netName),
			err.Error()+"; DEL the attachment to clear it")
	}
	if res, err = res.ConvertTo(version); err != nil {
		return nil, cni.NewError(cni.ErrIncompatibleCNIVersion, fmt.Sprintf("failed to convert cached result to config version %q", version), err.Error())
	}
	return res, nil
}

// GetNetworkListCachedResult returns the result cached by the ADD of this
// attachment, converted to the list's version; (nil, nil) if none.
func (c *CNI) GetNetworkListCachedResult(list *cni.NetworkConfigList, rt *RuntimeConf) (*cni.Result, error) {
	if list == nil || rt == nil {
		return nil, errNilArgs
	}
	return c.cachedResult(list.Name, list.CNIVersion, rt)
}

// GetNetworkListCachedConfig returns the list config bytes cached by the
// ADD of this attachment and a copy of rt whose Args and CapabilityArgs are
// the ones the ADD used; (nil, nil, nil) if nothing is cached.
func (c *CNI) GetNetworkListCachedConfig(list *cni.NetworkConfigList, rt *RuntimeConf) ([]byte, *RuntimeConf, error) {
	if list == nil || rt == nil {
		return nil, nil, errNilArgs
	}
	e, err := c.readCache(list.Name, rt)
	if err != nil || e == nil {
		return nil, nil, err
	}
	if e.Kind != cacheKind {
		return nil, nil, cni.NewError(cni.ErrDecodingFailure, fmt.Sprintf("cached network %q config is not in the %s format", list.Name, cacheKind),
			"the file holds only a result (written by an old runtime); DEL the attachment to clear it")
	}
	out := *rt
	if e.CNIArgs != nil {
		out.Args = e.CNIArgs
	}
	out.CapabilityArgs = e.CapabilityArgs
	return e.Config, &out, nil
}

// GetCachedAttachments lists the cached attachments of containerID, or of
// every container for "", in file name order. Files that are not readable
// cniCacheV1 entries naming a network and an interface are skipped.
func (c *CNI) GetCachedAttachments(containerID string) ([]*Attachment, error) {
	dir := c.resultsDir()
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing cached attachments: %w", err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		names = append(names, e.Name())
	}
	sort.Strings(names)
	var out []*Attachment
	for _, name := range names {
		if containerID != "" && !strings.Contains(name, "-"+containerID+"-") {
			continue
		}
		path := filepath.Join(dir, name)
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		var e cacheEntry
		if json.Unmarshal(data, &e) != nil || e.Kind != cacheKind || e.IfName == "" || e.NetworkName == "" {
			continue
		}
		if containerID != "" && e.ContainerID != containerID {
			continue
		}
		a := &Attachment{
			ContainerID:    e.ContainerID,
			IfName:         e.IfName,
			NetworkName:    e.NetworkName,
			NetNS:          e.NetNS,
			Args:           e.CNIArgs,
			CapabilityArgs: e.CapabilityArgs,
			Config:         e.Config,
			CacheFile:      path,
		}
		if len(e.Result) > 0 && string(e.Result) != "null" {
			if res, err := cni.ParseResult(e.Result, configVersion(e.Config)); err == nil {
				a.Result = res
			}
		}
		out = append(out, a)
	}
	return out, nil
}

// configVersion returns the selected version of cached list bytes, "" if
// they cannot be parsed (a result without cniVersion is then read as 0.1.0).
func configVersion(conf []byte) string {
	if list, err := cni.ParseConfigList(conf); err == nil {
		return list.CNIVersion
	}
	return ""
}
