package bandwidth

import (
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/knit-cni/knit/internal/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ifbPrefix starts every ifb name, as with the reference plugin.
const ifbPrefix = "bwp"

// IfbName is the ifb device shaping a container's egress: "bwp" and the
// first 12 hex digits of SHA-512(network name + container ID), 15
// characters, exactly the reference plugin's name, so either plugin's DEL
// finds the other's device.
func IfbName(network, containerID string) string {
	sum := sha512.Sum512([]byte(network + containerID))
	return (ifbPrefix + hex.EncodeToString(sum[:]))[:unix.IFNAMSIZ-1]
}

// aliasPrefix starts the alias of every ifb knit makes; the rest is the
// owner, "network/containerID/ifname". GC finds ifbs by it.
const aliasPrefix = "knit-bandwidth "

// ownerAlias is the alias (IFLA_IFALIAS) tagging an ifb with its owner.
func ownerAlias(network, containerID, ifname string) string {
	return aliasPrefix + network + "/" + containerID + "/" + ifname
}

// parseAlias returns the owner parts of an alias made by ownerAlias.
func parseAlias(alias string) (network, containerID, ifname string, ok bool) {
	rest, found := strings.CutPrefix(alias, aliasPrefix)
	if !found {
		return "", "", "", false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}

// createIfb makes (or, on a repeated ADD, reuses) the owner's ifb device
// with the host veth's MTU, up. An ifb of that name with another owner is
// refused.
func createIfb(host *link.Namespace, name, alias string, mtu int) (l netlink.Link, created bool, err error) {
	if old, err := host.Handle.LinkByName(name); err == nil {
		if _, ok := old.(*netlink.Ifb); !ok || old.Attrs().Alias != alias {
			return nil, false, fmt.Errorf("a link named %s already exists (a %s with alias %q), it is not this attachment's ifb: DEL the attachment that owns it",
				name, old.Type(), old.Attrs().Alias)
		}
		l = old
	} else if !link.IsNotFound(err) {
		return nil, false, fmt.Errorf("looking up %s: %w", name, err)
	} else {
		attrs := netlink.NewLinkAttrs()
		attrs.Name, attrs.Alias, attrs.MTU = name, alias, mtu
		attrs.TxQLen = 1000
		if err := host.Handle.LinkAdd(&netlink.Ifb{LinkAttrs: attrs}); err != nil {
			if errors.Is(err, unix.EEXIST) {
				return nil, false, fmt.Errorf("creating ifb %s: a link of that name appeared meanwhile: retry", name)
			}
			return nil, false, fmt.Errorf("creating ifb %s: %w", name, err)
		}
		created = true
		if l, err = host.Handle.LinkByName(name); err != nil {
			return nil, created, fmt.Errorf("looking up new ifb %s: %w", name, err)
		}
		// The kernel ignores an alias given at creation; set it now. (DEL
		// finds the ifb by name, so a crash before this leaves nothing DEL
		// cannot remove.)
		if err := host.Handle.LinkSetAlias(l, alias); err != nil {
			return l, created, fmt.Errorf("tagging ifb %s with its owner: %w", name, err)
		}
		l.Attrs().Alias = alias
	}
	if err := host.Handle.LinkSetUp(l); err != nil {
		return l, created, fmt.Errorf("setting ifb %s up: %w", name, err)
	}
	return l, created, nil
}

// deleteIfb removes the ifb called name unless it carries another owner's
// alias; an ifb without an alias (made by the reference plugin) is removed
// too. A missing ifb is not an error.
func deleteIfb(host *link.Namespace, name, alias string) error {
	l, err := host.Handle.LinkByName(name)
	if err != nil {
		if link.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("looking up ifb %s: %w", name, err)
	}
	if _, ok := l.(*netlink.Ifb); !ok {
		return nil
	}
	if a := l.Attrs().Alias; a != "" && a != alias {
		return nil
	}
	if err := host.Handle.LinkDel(l); err != nil && !link.IsNotFound(err) {
		return fmt.Errorf("deleting ifb %s: %w", name, err)
	}
	return nil
}

// ingressHandle is the ingress qdisc's handle (ffff:).
var ingressHandle = netlink.MakeHandle(0xffff, 0)

// redirectToIfb sends everything arriving on the host veth (the
// container's egress) to the ifb: an ingress qdisc with a match-all u32
// filter whose mirred action redirects to the ifb's egress, where its TBF
// shapes it. A filter already redirecting there is kept.
func redirectToIfb(host *link.Namespace, veth, ifb netlink.Link) error {
	q := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: veth.Attrs().Index, Handle: ingressHandle, Parent: netlink.HANDLE_INGRESS}}
	if err := host.Handle.QdiscAdd(q); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("adding an ingress qdisc to %s: %w", veth.Attrs().Name, err)
	}
	if f, err := redirectFilter(host, veth, ifb.Attrs().Index); err != nil || f != nil {
		return err
	}
	mirred := netlink.NewMirredAction(ifb.Attrs().Index)
	f := &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: veth.Attrs().Index,
			Parent:    ingressHandle,
			Priority:  1,
			Protocol:  unix.ETH_P_ALL,
		},
		ClassId: netlink.MakeHandle(1, 1),
		Sel:     &netlink.TcU32Sel{Nkeys: 1, Flags: netlink.TC_U32_TERMINAL, Keys: []netlink.TcU32Key{{}}},
		Actions: []netlink.Action{mirred},
	}
	if err := host.Handle.FilterAdd(f); err != nil {
		return fmt.Errorf("adding a u32 filter redirecting %s to %s: %w", veth.Attrs().Name, ifb.Attrs().Name, err)
	}
	return nil
}

// redirectFilter returns the u32 filter on veth's ingress qdisc that
// redirects to the link with index ifbIndex, or nil.
func redirectFilter(host *link.Namespace, veth netlink.Link, ifbIndex int) (*netlink.U32, error) {
	fs, err := link.Dump(func() ([]netlink.Filter, error) { return host.Handle.FilterList(veth, ingressHandle) })
	if err != nil {
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			return nil, nil // no ingress qdisc
		}
		return nil, fmt.Errorf("listing ingress filters of %s: %w", veth.Attrs().Name, err)
	}
	for _, f := range fs {
		u, ok := f.(*netlink.U32)
		if !ok {
			continue
		}
		for _, a := range u.Actions {
			if m, ok := a.(*netlink.MirredAction); ok && m.Ifindex == ifbIndex && m.MirredAction == netlink.TCA_EGRESS_REDIR {
				return u, nil
			}
		}
	}
	return nil, nil
}

// undoRedirect removes the filter redirecting veth to the ifb and then the
// ingress qdisc if no other filter is left on it.
func undoRedirect(host *link.Namespace, veth netlink.Link, ifbIndex int) error {
	f, err := redirectFilter(host, veth, ifbIndex)
	if err != nil {
		return err
	}
	if f != nil {
		if err := host.Handle.FilterDel(f); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("removing the redirect filter from %s: %w", veth.Attrs().Name, err)
		}
	}
	fs, err := link.Dump(func() ([]netlink.Filter, error) { return host.Handle.FilterList(veth, ingressHandle) })
	if err != nil || len(fs) > 0 {
		return nil // no ingress qdisc, or someone else's filters still use it
	}
	q := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: veth.Attrs().Index, Handle: ingressHandle, Parent: netlink.HANDLE_INGRESS}}
	if err := host.Handle.QdiscDel(q); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("removing the ingress qdisc of %s: %w", veth.Attrs().Name, err)
	}
	return nil
}
