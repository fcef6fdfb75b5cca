// Command knit-plugin is knit's CNI plugins as a multi-call binary. It is
// installed as links named by plugin type (loopback, host-local, bridge, …)
// and picks the plugin from the name it was run as, so any runtime finds it
// on CNI_PATH. It can also be run as `knit-plugin TYPE` for testing.
//
// Each plugin registers itself from its own file (plugin_*.go) so this binary
// imports only plugin code: no CLI, no servers.
//
// Two builds. A plugin runs as a fresh process for every operation, and in
// such a short life the binary's size costs time: the Go runtime's start and
// the first touch of code and data pages grow with it (a build of only the
// common plugins starts ~0.2-0.3 ms sooner than one of all of them, per
// exec, measured). So `make build` makes two binaries from this package:
//
//   - knit-plugin (-tags knit_core): the plugins of the common chains —
//     loopback, bridge, ptp, portmap, firewall, and the IPAM plugins
//     host-local and static;
//   - knit-plugin-extra (-tags knit_extra): the others — macvlan, ipvlan,
//     host-device, tap, vlan, dummy, vrf, dhcp, bandwidth, tuning, sbr — with
//     host-local and static again, so their IPAM also runs in process.
//
// `knit install` links each type to the first of the two that has it. A
// build without either tag has every plugin (the tests use it), and
// installs alone just as well.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/knit-cni/knit/pkg/cni/skel"
)

type entry struct {
	plugin skel.Plugin
	info   skel.Info
}

var registry = map[string]entry{}

func register(p skel.Plugin, info skel.Info) {
	registry[info.Name] = entry{p, info}
}

// Types returns the registered plugin types, sorted.
func Types() []string {
	var names []string
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func main() {
	inProcessDelegates()
	name := filepath.Base(os.Args[0])
	if e, ok := registry[name]; ok {
		skel.Main(e.plugin, e.info)
	}
	if len(os.Args) > 1 {
		if os.Args[1] == "--list" {
			fmt.Println(strings.Join(Types(), "\n"))
			return
		}
		if e, ok := registry[os.Args[1]]; ok {
			skel.Main(e.plugin, e.info)
		}
	}
	fmt.Fprintf(os.Stderr, "knit-plugin: run me as one of the plugin types (a link named %s), or as `knit-plugin TYPE`\n",
		strings.Join(Types(), ", "))
	os.Exit(1)
}
