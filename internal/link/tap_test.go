package link

import (
	"errors"
	"testing"

	"github.com/knit-cni/knit/internal/kfeature"
	"github.com/vishvananda/netlink"
)

func TestCreateTapOwnership(t *testing.T) {
	kfeature.Require(t, kfeature.Tun)
	_, cont := openPair(t)
	uid, gid := uint32(4242), uint32(0)
	mac, _ := RandomMAC()
	l, err := CreateTap(cont, Tap{Name: "tapo", Owner: &uid, Group: &gid, MultiQueue: true, MTU: 1280, MAC: mac})
	if err != nil {
		t.Fatal(err)
	}
	if l.Attrs().MTU != 1280 || l.Attrs().HardwareAddr.String() != mac.String() {
		t.Errorf("MTU %d MAC %s", l.Attrs().MTU, l.Attrs().HardwareAddr)
	}
	info, err := DescribeTap(cont, l)
	if err != nil {
		t.Fatal(err)
	}
	// gid 0 is a real group, distinct from "none".
	if info.Owner == nil || *info.Owner != 4242 || info.Group == nil || *info.Group != 0 || !info.MultiQueue || !info.VnetHdr || !info.Tap || !info.Persistent {
		t.Errorf("info %+v owner %v group %v", info, info.Owner, info.Group)
	}

	free, err := CreateTap(cont, Tap{Name: "tapf"})
	if err != nil {
		t.Fatal(err)
	}
	if info, err = DescribeTap(cont, free); err != nil || info.Owner != nil || info.Group != nil || info.MultiQueue {
		t.Errorf("unowned tap: %+v %v", info, err)
	}

	// An existing name is refused and the device left alone.
	if _, err := CreateTap(cont, Tap{Name: "tapf", MultiQueue: true}); !errors.As(err, new(*ExistsError)) {
		t.Errorf("duplicate name: %v", err)
	}
	if _, err := DescribeTap(cont, &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "x"}}); err == nil {
		t.Error("DescribeTap accepted a non-tap link")
	}
}
