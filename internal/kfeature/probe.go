package kfeature

import (
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
)

// The probes run inside a throwaway namespace (see inThrowawayNS), so the
// names they use cannot collide with anything and need no cleanup.

func add(l netlink.Link) error {
	if err := netlink.LinkAdd(l); err != nil {
		return fmt.Errorf("creating %s link %q: %w", l.Type(), l.Attrs().Name, err)
	}
	return nil
}

func attrs(name string) netlink.LinkAttrs {
	a := netlink.NewLinkAttrs()
	a.Name = name
	return a
}

// parent makes a veth pair to stack a link on; a failure is the probe's
// problem, not the feature's.
func parent() (int, error) {
	if err := add(&netlink.Veth{LinkAttrs: attrs("kfp0"), PeerName: "kfp1"}); err != nil {
		return 0, &setupError{fmt.Errorf("kfeature: needs veth for a parent link: %w", err)}
	}
	l, err := netlink.LinkByName("kfp0")
	if err != nil {
		return 0, &setupError{fmt.Errorf("kfeature: looking up the parent link: %w", err)}
	}
	return l.Attrs().Index, nil
}

func probeDummy() error { return add(&netlink.Dummy{LinkAttrs: attrs("kfdummy")}) }

func probeVeth() error {
	return add(&netlink.Veth{LinkAttrs: attrs("kfveth0"), PeerName: "kfveth1"})
}

func probeBridge() error { return add(&netlink.Bridge{LinkAttrs: attrs("kfbr")}) }

func probeBridgeVlanFiltering() error {
	on := true
	if err := add(&netlink.Bridge{LinkAttrs: attrs("kfbr"), VlanFiltering: &on}); err != nil {
		return err
	}
	l, err := netlink.LinkByName("kfbr")
	if err != nil {
		return err
	}
	br, ok := l.(*netlink.Bridge)
	if !ok || br.VlanFiltering == nil || !*br.VlanFiltering {
		return fmt.Errorf("bridge created but vlan_filtering reads back off")
	}
	// A port VLAN is what the feature is for: try one.
	idx, err := parent()
	if err != nil {
		return err
	}
	port, err := netlink.LinkByIndex(idx)
	if err != nil {
		return &setupError{err}
	}
	if err := netlink.LinkSetMaster(port, br); err != nil {
		return &setupError{fmt.Errorf("kfeature: enslaving a veth to the probe bridge: %w", err)}
	}
	if err := netlink.BridgeVlanAdd(port, 10, true, true, false, false); err != nil {
		return fmt.Errorf("adding vlan 10 to a bridge port: %w", err)
	}
	return nil
}

func probeIPVlan() error {
	idx, err := parent()
	if err != nil {
		return err
	}
	a := attrs("kfipvl")
	a.ParentIndex = idx
	return add(&netlink.IPVlan{LinkAttrs: a, Mode: netlink.IPVLAN_MODE_L2})
}

func probeMacvlan() error {
	idx, err := parent()
	if err != nil {
		return err
	}
	a := attrs("kfmacvl")
	a.ParentIndex = idx
	return add(&netlink.Macvlan{LinkAttrs: a, Mode: netlink.MACVLAN_MODE_BRIDGE})
}

func probeVlan() error {
	idx, err := parent()
	if err != nil {
		return err
	}
	a := attrs("kfvlan")
	a.ParentIndex = idx
	return add(&netlink.Vlan{LinkAttrs: a, VlanId: 100})
}

func probeVRF() error { return add(&netlink.Vrf{LinkAttrs: attrs("kfvrf"), Table: 100}) }

func probeBonding() error { return add(netlink.NewLinkBond(attrs("kfbond"))) }

func probeGeneve() error {
	return add(&netlink.Geneve{LinkAttrs: attrs("kfgnv"), ID: 42, Remote: net.IPv4(192, 0, 2, 1)})
}

func probeVxlan() error {
	return add(&netlink.Vxlan{LinkAttrs: attrs("kfvxlan"), VxlanId: 42, Port: 4789, Group: net.IPv4(192, 0, 2, 1)})
}

func probeWireGuard() error { return add(&netlink.Wireguard{LinkAttrs: attrs("kfwg")}) }

// probeTun creates a persistent tap: the device is made in the namespace of
// the thread that opens /dev/net/tun, the throwaway one.
func probeTun() error {
	t := &netlink.Tuntap{LinkAttrs: attrs("kftap"), Mode: netlink.TUNTAP_MODE_TAP}
	if err := add(t); err != nil {
		return err
	}
	for _, f := range t.Fds {
		f.Close()
	}
	return nil
}

func probeIFB() error { return add(&netlink.Ifb{LinkAttrs: attrs("kfifb")}) }
