package dhcpd

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/knit-cni/knit/internal/dhcpd/api"
	"github.com/knit-cni/knit/internal/netns"
)

// defaultRequest are the options asked for on top of what the DHCP library
// always requests (subnet mask, router, domain name, name servers).
var defaultRequest = []dhcpv4.OptionCode{dhcpv4.OptionClasslessStaticRoute, dhcpv4.OptionStaticRoutingTable, dhcpv4.OptionDNSDomainSearchList}

// withClient opens a DHCP client on ifname inside the namespace at nsPath
// (its raw socket stays bound to that namespace), brings the link up, runs
// fn and closes the client.
func withClient(nsPath, ifname string, timeout time.Duration, fn func(c *nclient4.Client) error) error {
	var c *nclient4.Client
	err := netns.Do(nsPath, func() error {
		l, err := netlink.LinkByName(ifname)
		if err != nil {
			return fmt.Errorf("interface %s in %s: %w", ifname, nsPath, err)
		}
		if l.Attrs().Flags&net.FlagUp == 0 {
			if err := netlink.LinkSetUp(l); err != nil {
				return fmt.Errorf("bringing %s up: %w", ifname, err)
			}
			waitCarrier(ifname, 2*time.Second)
		}
		c, err = nclient4.New(ifname, nclient4.WithTimeout(timeout), nclient4.WithRetry(3))
		if err != nil {
			return fmt.Errorf("opening a DHCP client on %s: %w", ifname, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	defer c.Close()
	return fn(c)
}

// modifiers are the options a lease's every DISCOVER and REQUEST carry:
// the client identifier (the lease key unless provided), provided options
// and the request list.
func modifiers(l *api.Lease) []dhcpv4.Modifier {
	var mods []dhcpv4.Modifier
	hasClientID := false
	for _, o := range l.Provide {
		hasClientID = hasClientID || o.Code == dhcpv4.OptionClientIdentifier.Code()
		mods = append(mods, dhcpv4.WithGeneric(dhcpv4.GenericOptionCode(o.Code), o.Value))
	}
	if !hasClientID {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptClientIdentifier(clientID(l.Key))))
	}
	var req []dhcpv4.OptionCode
	if !l.SkipDefault {
		req = append(req, defaultRequest...)
	}
	for _, c := range l.Request {
		req = append(req, dhcpv4.GenericOptionCode(uint8(c)))
	}
	if len(req) > 0 {
		mods = append(mods, dhcpv4.WithRequestedOptions(req...))
	}
	return mods
}

// clientID is the default client identifier: type 0 (not a hardware
// address) followed by the key, as RFC 2132 allows.
func clientID(k api.Key) []byte {
	return append([]byte{0}, k.String()...)
}

// acquire runs DISCOVER-OFFER-REQUEST-ACK.
func acquire(ctx context.Context, l *api.Lease, timeout time.Duration) (*nclient4.Lease, error) {
	var lease *nclient4.Lease
	err := withClient(l.Netns, l.IfName, timeout, func(c *nclient4.Client) error {
		var err error
		lease, err = c.Request(ctx, modifiers(l)...)
		return err
	})
	return lease, err
}

// renew sends a REQUEST for the bound address (RFC 2131 RENEWING; the
// library broadcasts it, which also serves REBINDING).
func renew(ctx context.Context, l *api.Lease, cur *nclient4.Lease, timeout time.Duration) (*nclient4.Lease, error) {
	var lease *nclient4.Lease
	err := withClient(l.Netns, l.IfName, timeout, func(c *nclient4.Client) error {
		var err error
		lease, err = c.Renew(ctx, cur, modifiers(l)...)
		return err
	})
	return lease, err
}

// waitCarrier waits until a link just brought up has carrier, so the first
// DISCOVER is not lost (it returns after max regardless).
func waitCarrier(ifname string, max time.Duration) {
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		l, err := netlink.LinkByName(ifname)
		if err != nil || l.Attrs().OperState == netlink.OperUp || l.Attrs().OperState == netlink.OperUnknown {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// release sends a DHCPRELEASE to the server that granted the lease. The
// library's own Release sends from 0.0.0.0, which a server's kernel drops
// as a martian for a unicast destination, so it goes out here from the
// leased address (still on a raw socket: the address need not be
// configured).
func release(l *api.Lease, cur *nclient4.Lease, _ time.Duration) error {
	msg, err := dhcpv4.NewReleaseFromACK(cur.ACK, modifiers(l)...)
	if err != nil {
		return err
	}
	server := cur.ACK.ServerIdentifier()
	if server == nil {
		return fmt.Errorf("the lease names no server")
	}
	var conn net.PacketConn
	err = netns.Do(l.Netns, func() error {
		ifc, err := net.InterfaceByName(l.IfName)
		if err != nil {
			return err
		}
		raw, err := packet.Listen(ifc, packet.Datagram, unix.ETH_P_IP, nil)
		if err != nil {
			return err
		}
		conn = nclient4.NewBroadcastUDPConn(raw, &net.UDPAddr{IP: cur.ACK.YourIPAddr, Port: nclient4.ClientPort})
		return nil
	})
	if err != nil {
		return fmt.Errorf("opening a socket on %s in %s: %w", l.IfName, l.Netns, err)
	}
	defer conn.Close()
	_, err = conn.WriteTo(msg.ToBytes(), &net.UDPAddr{IP: server, Port: nclient4.ServerPort})
	return err
}
