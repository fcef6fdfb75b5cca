package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/knit-cni/knit/pkg/cni"
)

// DefaultConfDir is where runtimes conventionally keep network configurations.
const DefaultConfDir = "/etc/cni/net.d"

// NotFoundError: the directory holds configurations but none with the name.
type NotFoundError struct{ Dir, Name string }

func (e NotFoundError) Error() string {
	return fmt.Sprintf("no net configuration with name %q in %s", e.Name, e.Dir)
}

// NoConfigsFoundError: the directory holds no network configurations.
type NoConfigsFoundError struct{ Dir string }

func (e NoConfigsFoundError) Error() string {
	return fmt.Sprintf("no net configurations found in %s", e.Dir)
}

// ConfFiles lists the files in dir whose extension (from the last dot) is
// exactly one of extensions, sorted byte-wise. Directories (also through
// symlinks) are skipped and never descended into. A missing dir is no files.
func ConfFiles(dir string, extensions []string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading network configuration directory: %w", err)
	}
	var files []string
	for _, e := range entries {
		ext := filepath.Ext(e.Name())
		match := false
		for _, want := range extensions {
			if ext == want {
				match = true
			}
		}
		if !match || e.IsDir() {
			continue
		}
		full := filepath.Join(dir, e.Name())
		if e.Type()&os.ModeSymlink != 0 {
			if fi, err := os.Stat(full); err == nil && fi.IsDir() {
				continue
			}
		}
		files = append(files, full)
	}
	sort.Strings(files)
	return files, nil
}

// LoadConfListFile parses a .conflist file and, unless the list says
// loadOnlyInlinedPlugins, appends the plugin objects of the *.conf files in
// the directory named like the network next to it. A list that ends up with
// no plugins is an error.
func LoadConfListFile(path string) (*cni.NetworkConfigList, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, cni.NewError(cni.ErrIOFailure, "cannot read network configuration", err.Error())
	}
	list, err := cni.ParseConfigList(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if !list.LoadOnlyInlinedPlugins {
		more, err := loadSubdirPlugins(filepath.Join(filepath.Dir(path), list.Name))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		list.Plugins = append(list.Plugins, more...)
	}
	if len(list.Plugins) == 0 {
		return nil, fmt.Errorf("%s: %w", path, cni.NewError(cni.ErrInvalidNetworkConfig, "no plugin configs found",
			"add a \"plugins\" array to the list or plugin .conf files to the directory named like the network"))
	}
	return list, nil
}

// loadSubdirPlugins reads the plugin objects of <dir>/*.conf in file order.
func loadSubdirPlugins(dir string) ([]*cni.PluginConfig, error) {
	files, err := ConfFiles(dir, []string{".conf"})
	if err != nil {
		return nil, err
	}
	var out []*cni.PluginConfig
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, cni.NewError(cni.ErrIOFailure, "cannot read plugin configuration", err.Error())
		}
		pc, err := cni.ParsePluginConfig(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		out = append(out, pc)
	}
	return out, nil
}

// loadConfFile parses a single-plugin .conf/.json file.
func loadConfFile(path string) (*cni.PluginConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, cni.NewError(cni.ErrIOFailure, "cannot read network configuration", err.Error())
	}
	pc, err := cni.ParsePluginConfig(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return pc, nil
}

// LoadConfList loads the network called name from dir, like the reference:
// the first .conflist (byte-wise file order) with that name, with plugins
// from the network's subdirectory merged in; failing that, the first
// single-plugin .conf/.json with that name, wrapped into a list. Any
// unparsable file met on the way aborts the lookup.
func LoadConfList(dir, name string) (*cni.NetworkConfigList, error) {
	lists, err := ConfFiles(dir, []string{".conflist"})
	if err != nil {
		return nil, err
	}
	for _, f := range lists {
		list, err := LoadConfListFile(f)
		if err != nil {
			return nil, err
		}
		if list.Name == name {
			return list, nil
		}
	}
	confs, err := ConfFiles(dir, []string{".conf", ".json"})
	if err != nil {
		return nil, err
	}
	if len(confs) == 0 {
		if len(lists) > 0 {
			return nil, NotFoundError{Dir: dir, Name: name}
		}
		return nil, NoConfigsFoundError{Dir: dir}
	}
	for _, f := range confs {
		pc, err := loadConfFile(f)
		if err != nil {
			return nil, err
		}
		if pc.Network.Name == name {
			return cni.ConfListFromConf(pc)
		}
	}
	return nil, NotFoundError{Dir: dir, Name: name}
}

// LoadAllConfLists loads every network in dir for listings: the networks of
// the .conflist files, then those only defined by .conf/.json files, each in
// byte-wise file order; when two files define the same name the one
// LoadConfList would pick wins. A file that cannot be loaded does not hide
// the others: the networks loaded are returned together with an error
// naming every bad file. A missing or empty dir is no networks, no error.
func LoadAllConfLists(dir string) ([]*cni.NetworkConfigList, error) {
	lists, err := ConfFiles(dir, []string{".conflist"})
	if err != nil {
		return nil, err
	}
	confs, err := ConfFiles(dir, []string{".conf", ".json"})
	if err != nil {
		return nil, err
	}
	var (
		out  []*cni.NetworkConfigList
		errs []error
		seen = map[string]bool{}
	)
	for _, f := range lists {
		list, err := LoadConfListFile(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !seen[list.Name] {
			seen[list.Name] = true
			out = append(out, list)
		}
	}
	for _, f := range confs {
		pc, err := loadConfFile(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if seen[pc.Network.Name] {
			continue
		}
		list, err := cni.ConfListFromConf(pc)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f, err))
			continue
		}
		seen[list.Name] = true
		out = append(out, list)
	}
	return out, errors.Join(errs...)
}
