package link

import (
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ErrVlanFilteringUnsupported says the kernel cannot do bridge VLAN
// filtering (CONFIG_BRIDGE_VLAN_FILTERING, which needs 802.1Q support).
var ErrVlanFilteringUnsupported = errors.New("this kernel has no bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING is off): vlan, vlanTrunk and preserveDefaultVlan cannot be used")

// Bridge describes the bridge EnsureBridge makes or reuses.
type Bridge struct {
	Name          string
	MTU           int  // 0: kernel default; applied only when creating
	Promisc       bool // turned on when set (never turned off)
	VlanFiltering bool // needed for port VLANs
}

// EnsureBridge returns the bridge called b.Name in ns, creating it (up, with
// a fixed random MAC so it no longer follows its ports' MACs) when missing.
// An existing link of that name that is not a bridge is an error. created
// reports whether this call made it.
func EnsureBridge(ns *Namespace, b Bridge) (br *netlink.Bridge, created bool, err error) {
	l, err := ByName(ns, b.Name)
	switch {
	case err == nil:
	case IsNotFound(err):
		l, err = createBridge(ns, b)
		if err != nil {
			return nil, false, err
		}
		created = true
	default:
		return nil, false, fmt.Errorf("bridge %s: %w", b.Name, err)
	}
	br, ok := l.(*netlink.Bridge)
	if !ok {
		return nil, false, fmt.Errorf("%s already exists but is a %s, not a bridge: use another bridge name or remove it", b.Name, l.Type())
	}
	if b.VlanFiltering && (br.VlanFiltering == nil || !*br.VlanFiltering) {
		if err := ns.Handle.BridgeSetVlanFiltering(br, true); err != nil {
			if errors.Is(err, unix.EOPNOTSUPP) {
				return nil, false, ErrVlanFilteringUnsupported
			}
			return nil, false, fmt.Errorf("enabling VLAN filtering on bridge %s: %w", b.Name, err)
		}
	}
	if b.Promisc && br.Promisc == 0 {
		if err := ns.Handle.SetPromiscOn(br); err != nil {
			return nil, false, fmt.Errorf("setting bridge %s promiscuous: %w", b.Name, err)
		}
		br.Promisc = 1
	}
	if br.Flags&net.FlagUp == 0 {
		if err := ns.Handle.LinkSetUp(br); err != nil {
			return nil, false, fmt.Errorf("setting bridge %s up: %w", b.Name, err)
		}
		br.Flags |= net.FlagUp
	}
	return br, created, nil
}

func createBridge(ns *Namespace, b Bridge) (netlink.Link, error) {
	attrs := netlink.NewLinkAttrs()
	attrs.Name = b.Name
	attrs.MTU = b.MTU
	attrs.TxQLen = -1
	mac, err := RandomMAC()
	if err != nil {
		return nil, err
	}
	attrs.HardwareAddr = mac
	nb := &netlink.Bridge{LinkAttrs: attrs}
	if b.VlanFiltering {
		on := true
		nb.VlanFiltering = &on
	}
	if err := ns.Handle.LinkAdd(nb); err != nil && !errors.Is(err, unix.EEXIST) {
		if b.VlanFiltering && errors.Is(err, unix.EOPNOTSUPP) {
			return nil, ErrVlanFilteringUnsupported
		}
		return nil, fmt.Errorf("creating bridge %s: %w", b.Name, err)
	}
	// Another plugin may have won the race (EEXIST): use whatever is there.
	l, err := ByName(ns, b.Name)
	if err != nil {
		return nil, fmt.Errorf("new bridge %s: %w", b.Name, err)
	}
	return l, nil
}

// RandomMAC returns a random unicast, locally administered MAC address.
func RandomMAC() (net.HardwareAddr, error) {
	mac := make(net.HardwareAddr, 6)
	if err := randomBytes(mac); err != nil {
		return nil, fmt.Errorf("choosing a MAC: %w", err)
	}
	mac[0] = (mac[0] &^ 0x01) | 0x02
	return mac, nil
}

// Port holds the bridge-port settings of AttachPort.
type Port struct {
	Hairpin  bool // reflect frames back out of the port they came in on
	Isolated bool // isolated ports only talk to non-isolated ones
}

// AttachPort enslaves port to br, unless port (as looked up) already is
// br's port (a veth created with Veth.MasterIndex), and applies the port
// flags that are set.
func AttachPort(ns *Namespace, port netlink.Link, br netlink.Link, p Port) error {
	if port.Attrs().MasterIndex != br.Attrs().Index {
		if err := ns.Handle.LinkSetMasterByIndex(port, br.Attrs().Index); err != nil {
			return fmt.Errorf("attaching %s to bridge %s: %w", port.Attrs().Name, br.Attrs().Name, err)
		}
		port.Attrs().MasterIndex = br.Attrs().Index
	}
	if p.Hairpin {
		if err := ns.Handle.LinkSetHairpin(port, true); err != nil {
			return fmt.Errorf("setting hairpin mode on %s: %w", port.Attrs().Name, err)
		}
	}
	if p.Isolated {
		if err := ns.Handle.LinkSetIsolated(port, true); err != nil {
			return fmt.Errorf("isolating bridge port %s: %w", port.Attrs().Name, err)
		}
	}
	return nil
}

// VlanRange is an inclusive range of VLAN IDs.
type VlanRange struct{ Min, Max int }

// SetPortVlans makes port a member of the given VLANs: pvid (if non-zero) as
// the untagged native VLAN, trunk ranges tagged; unless keepDefault, the
// default VLAN 1 the kernel adds to every port is removed. It needs a
// VLAN-filtering bridge.
func SetPortVlans(ns *Namespace, port netlink.Link, pvid int, trunk []VlanRange, keepDefault bool) error {
	name := port.Attrs().Name
	if !keepDefault {
		if err := ns.Handle.BridgeVlanDel(port, 1, true, true, false, true); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("removing default VLAN 1 from %s: %w", name, err)
		}
	}
	if pvid != 0 {
		if err := ns.Handle.BridgeVlanAdd(port, uint16(pvid), true, true, false, true); err != nil {
			return vlanErr(err, name, pvid)
		}
	}
	for _, r := range trunk {
		for id := r.Min; id <= r.Max; id++ {
			if err := ns.Handle.BridgeVlanAdd(port, uint16(id), false, false, false, true); err != nil {
				return vlanErr(err, name, id)
			}
		}
	}
	return nil
}

func vlanErr(err error, port string, id int) error {
	if errors.Is(err, unix.EOPNOTSUPP) {
		return ErrVlanFilteringUnsupported
	}
	return fmt.Errorf("adding VLAN %d to bridge port %s: %w", id, port, err)
}
