package onelink

import (
	"context"

	"github.com/knit-cni/knit/internal/link"
	"github.com/knit-cni/knit/internal/sysctl"
	"github.com/knit-cni/knit/pkg/cni"
	"github.com/knit-cni/knit/pkg/cni/skel"
	"github.com/vishvananda/netlink"
)

// Child describes a link created as the child of a master interface
// (macvlan, ipvlan, vlan).
type Child struct {
	Kind        string     // names the plugin in messages ("vlan")
	Policy      IPAMPolicy // where addresses come from
	Master      string     // the master's name; "" = the default-route interface
	InContainer bool       // the master lives in the container namespace
	MTU         int        // 0 = inherit; must not exceed the master's
	Sysctls     []sysctl.Setting
	// New returns the link to create from attrs, which already carry the
	// MTU and the master's index.
	New func(attrs netlink.LinkAttrs) netlink.Link
}

// AddChild is the whole ADD of a child-link plugin: refuse a config whose
// addresses have no source, find the master, check the MTU against it,
// create the link under a temporary name in the container and rename it to
// CNI_IFNAME, then get and configure its addresses (Attachment.Add).
func AddChild(ctx context.Context, req *skel.Request, c Child) (*cni.Result, error) {
	if err := CheckPolicy(req, c.Policy, c.Kind); err != nil {
		return nil, err
	}
	a, err := Open(req)
	if err != nil {
		return nil, err
	}
	defer a.Close()
	parentNS, master, err := a.Parent(c.Master, c.InContainer)
	if err != nil {
		return nil, err
	}
	if err := CheckMTU(c.MTU, master); err != nil {
		return nil, err
	}
	return a.Add(ctx, Spec{
		Kind:    c.Kind,
		Policy:  c.Policy,
		Sysctls: c.Sysctls,
		Create: func(cont *link.Namespace) (netlink.Link, error) {
			attrs := netlink.NewLinkAttrs()
			attrs.MTU = c.MTU
			attrs.ParentIndex = master.Attrs().Index
			return link.CreateChild(parentNS, cont, c.New(attrs), req.IfName)
		},
	})
}

// CheckChild is the CHECK of a child-link plugin: verify runs on the
// container link, then its master is compared with the configured one (the
// default-route interface when master is "" and required is true; not at
// all when master is "" and required is false), then addresses, routes and
// the IPAM plugin's CHECK (Attachment.Check).
func CheckChild(ctx context.Context, req *skel.Request, master string, inContainer, required bool, verify Verify) error {
	a, err := Open(req)
	if err != nil {
		return err
	}
	defer a.Close()
	var parentNS *link.Namespace
	var parent netlink.Link
	if master != "" || required {
		if parentNS, parent, err = a.Parent(master, inContainer); err != nil {
			return err
		}
	}
	return a.Check(ctx, func(l netlink.Link) error {
		if err := verify(l); err != nil {
			return err
		}
		if parent == nil {
			return nil
		}
		return a.CheckParent(l, parentNS, parent)
	})
}
