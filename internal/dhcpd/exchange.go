package dhcpd

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"

	"github.com/knit-cni/knit/internal/dhcpd/api"
	"github.com/knit-cni/knit/internal/netns"
)

// defaultRequest are the options asked for on top of what the DHCP library
// always requests (subnet mask, router, domain name, name servers).
var defaultRequest = []dhcpv4.OptionCode{dhcpv4.OptionClasslessStaticRoute, dhcpv4.OptionDNSDomainSearchList}

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
		req = append(req, dhcpv4.GenericOptionCode(c))
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

// release sends a RELEASE for the lease.
func release(l *api.Lease, cur *nclient4.Lease, timeout time.Duration) error {
	return withClient(l.Netns, l.IfName, timeout, func(c *nclient4.Client) error {
		return c.Release(cur, modifiers(l)...)
	})
}
