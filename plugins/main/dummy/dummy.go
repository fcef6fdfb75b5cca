// Package dummy is the dummy plugin: the container gets a dummy interface
// (a link that carries no traffic out of the namespace, for addresses that
// must exist locally), created directly in its namespace and given the IPAM
// plugin's addresses. ipam is mandatory, as in the reference plugin.
package dummy

import (
	"context"
	"encoding/json"

	"github.com/knit-cni/knit/internal/link"
	"github.com/knit-cni/knit/pkg/cni"
	"github.com/knit-cni/knit/pkg/cni/skel"
	"github.com/knit-cni/knit/plugins/main/internal/onelink"
	"github.com/vishvananda/netlink"
)

// Plugin implements skel.Plugin, skel.GCer and skel.Statuser.
type Plugin struct{}

// Info describes the plugin for VERSION and the about banner.
var Info = skel.Info{Name: "dummy", About: "knit dummy plugin: a dummy interface in the container, config-compatible with the reference"}

var (
	_ skel.Plugin   = Plugin{}
	_ skel.GCer     = Plugin{}
	_ skel.Statuser = Plugin{}
)

// parseConfig decodes stdin: dummy has only the common keys.
func parseConfig(stdin []byte) error {
	var c cni.NetConf
	if err := json.Unmarshal(stdin, &c); err != nil {
		return cni.NewError(cni.ErrDecodingFailure, "failed to parse dummy network configuration", err.Error())
	}
	return nil
}

// Add creates the dummy interface in the container and configures it.
func (Plugin) Add(ctx context.Context, req *skel.Request) (*cni.Result, error) {
	if err := parseConfig(req.Config); err != nil {
		return nil, err
	}
	if err := onelink.CheckPolicy(req, onelink.IPAMRequired, "dummy"); err != nil {
		return nil, err
	}
	a, err := onelink.Open(req)
	if err != nil {
		return nil, err
	}
	defer a.Close()
	return a.Add(ctx, onelink.Spec{
		Kind:   "dummy",
		Policy: onelink.IPAMRequired,
		Create: func(cont *link.Namespace) (netlink.Link, error) {
			return link.CreateChild(nil, cont, &netlink.Dummy{LinkAttrs: netlink.NewLinkAttrs()}, req.IfName)
		},
	})
}

// Del removes the dummy interface and the IPAM reservation; best effort and
// repeatable.
func (Plugin) Del(ctx context.Context, req *skel.Request) error {
	return onelink.Del(ctx, req)
}

// Check verifies the dummy interface, its addresses and routes against
// prevResult, and the IPAM plugin's CHECK.
func (Plugin) Check(ctx context.Context, req *skel.Request) error {
	if err := parseConfig(req.Config); err != nil {
		return err
	}
	a, err := onelink.Open(req)
	if err != nil {
		return err
	}
	defer a.Close()
	return a.Check(ctx, func(l netlink.Link) error {
		if _, ok := l.(*netlink.Dummy); !ok {
			return onelink.CheckErr(req.IfName+" is not a dummy interface", "it is a "+l.Type())
		}
		return nil
	})
}

// Status reports whether the IPAM plugin can serve ADD.
func (Plugin) Status(ctx context.Context, req *skel.Request) error {
	if err := parseConfig(req.Config); err != nil {
		return err
	}
	return onelink.Status(ctx, req)
}

// GC forwards to the IPAM plugin, which releases stale reservations; like
// DEL it needs only the common keys.
func (Plugin) GC(ctx context.Context, req *skel.Request) error {
	return onelink.GC(ctx, req)
}
