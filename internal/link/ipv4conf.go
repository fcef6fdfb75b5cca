package link

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// ipv4ConfIDs are the kernel's IPV4_DEVCONF_* numbers (linux/ip.h) of the
// per-interface IPv4 settings, /proc/sys/net/ipv4/conf/IFNAME/<name>.
var ipv4ConfIDs = map[string]int{
	"forwarding": 1, "mc_forwarding": 2, "proxy_arp": 3, "accept_redirects": 4,
	"secure_redirects": 5, "send_redirects": 6, "shared_media": 7, "rp_filter": 8,
	"accept_source_route": 9, "bootp_relay": 10, "log_martians": 11, "tag": 12,
	"arp_filter": 13, "medium_id": 14, "disable_xfrm": 15, "disable_policy": 16,
	"force_igmp_version": 17, "arp_announce": 18, "arp_ignore": 19,
	"promote_secondaries": 20, "arp_accept": 21, "arp_notify": 22, "accept_local": 23,
	"src_valid_mark": 24, "proxy_arp_pvlan": 25, "route_localnet": 26,
	"igmpv2_unsolicited_report_interval": 27, "igmpv3_unsolicited_report_interval": 28,
	"ignore_routes_with_linkdown": 29, "drop_unicast_in_l2_multicast": 30,
	"drop_gratuitous_arp": 31, "bc_forwarding": 32, "arp_evict_nocarrier": 33,
}

// settableIPv4Conf reports whether writing setting id over netlink is the
// same as writing it under /proc/sys: netlink only stores the value, so
// settings whose /proc handler does more (flush the route cache, notify
// netconf listeners, forwarding's LRO and RA handling) are left to /proc.
func settableIPv4Conf(id int) bool {
	switch id {
	case 1, 2, 3, 8, 15, 16, 23, 26, 29, 32:
		// forwarding, mc_forwarding, proxy_arp, rp_filter, disable_xfrm,
		// disable_policy, accept_local, route_localnet,
		// ignore_routes_with_linkdown, bc_forwarding
		return false
	}
	return id > 0 && id <= 33
}

// IPv4ConfID returns the kernel's number for the per-interface IPv4 setting
// name (e.g. "arp_notify") and whether SetIPv4Conf may write it.
func IPv4ConfID(name string) (id int, ok bool) {
	id, ok = ipv4ConfIDs[name]
	return id, ok && settableIPv4Conf(id)
}

// ErrNoIPv4Conf says a link has no IPv4 settings (no IPv4 on it, e.g. an MTU
// below 68), as a missing /proc/sys/net/ipv4/conf/IFNAME directory would.
var ErrNoIPv4Conf = errors.New("the link has no IPv4 configuration")

// IPv4Conf reads l's per-interface IPv4 settings with one RTM_GETLINK: the
// values of net.ipv4.conf.IFNAME.*, by IPv4ConfID. It never touches
// /proc/sys, whose lookups grow with the number of namespaces.
func IPv4Conf(ns *Namespace, l netlink.Link) (map[int]uint32, error) {
	_, conf, err := linkIPv4Conf(ns.rawRequest, l.Attrs().Index)
	if err != nil {
		return nil, fmt.Errorf("reading the IPv4 settings of %s: %w", l.Attrs().Name, err)
	}
	if conf == nil {
		return nil, fmt.Errorf("%s: %w", l.Attrs().Name, ErrNoIPv4Conf)
	}
	return conf, nil
}

// linkIPv4Conf asks for link index with one RTM_GETLINK through do and
// returns its name and IPv4 settings (nil when it has none).
func linkIPv4Conf(do func(*nl.NetlinkRequest, uint16) ([][]byte, error), index int) (name string, conf map[int]uint32, err error) {
	req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	req.AddData(msg)
	msgs, err := do(req, unix.RTM_NEWLINK)
	if err != nil {
		return "", nil, err
	}
	for _, m := range msgs {
		if len(m) < unix.SizeofIfInfomsg {
			continue
		}
		attrs, err := nl.ParseRouteAttr(m[unix.SizeofIfInfomsg:])
		if err != nil {
			return "", nil, err
		}
		for _, a := range attrs {
			if a.Attr.Type == unix.IFLA_IFNAME {
				name = string(trimNUL(a.Value))
			}
		}
		if c := inetConf(attrs); c != nil {
			conf = c
		}
	}
	return name, conf, nil
}

// inetConf finds IFLA_AF_SPEC / AF_INET / IFLA_INET_CONF: one native-endian
// u32 per setting, the first being setting 1.
func inetConf(attrs []syscall.NetlinkRouteAttr) map[int]uint32 {
	for _, a := range attrs {
		if a.Attr.Type&^unix.NLA_F_NESTED != unix.IFLA_AF_SPEC {
			continue
		}
		fams, err := nl.ParseRouteAttr(a.Value)
		if err != nil {
			return nil
		}
		for _, f := range fams {
			if f.Attr.Type&^unix.NLA_F_NESTED != unix.AF_INET {
				continue
			}
			inner, err := nl.ParseRouteAttr(f.Value)
			if err != nil {
				return nil
			}
			for _, c := range inner {
				if c.Attr.Type&^unix.NLA_F_NESTED != unix.IFLA_INET_CONF {
					continue
				}
				out := make(map[int]uint32, len(c.Value)/4)
				for i := 0; i+4 <= len(c.Value); i += 4 {
					out[i/4+1] = nl.NativeEndian().Uint32(c.Value[i : i+4])
				}
				return out
			}
		}
	}
	return nil
}

// SetIPv4Conf writes per-interface IPv4 settings (by IPv4ConfID) on l with
// one RTM_SETLINK, as writing /proc/sys/net/ipv4/conf/IFNAME/<name> would.
func SetIPv4Conf(ns *Namespace, l netlink.Link, values map[int]uint32) error {
	if len(values) == 0 {
		return nil
	}
	req := nl.NewNetlinkRequest(unix.RTM_SETLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(l.Attrs().Index)
	req.AddData(msg)
	spec := nl.NewRtAttr(unix.IFLA_AF_SPEC, nil)
	conf := spec.AddRtAttr(unix.AF_INET, nil).AddRtAttr(unix.IFLA_INET_CONF, nil)
	for id, v := range values {
		if !settableIPv4Conf(id) {
			return fmt.Errorf("setting IPv4 setting %d of %s: not writable over netlink", id, l.Attrs().Name)
		}
		conf.AddRtAttr(id, nl.Uint32Attr(v))
	}
	req.AddData(spec)
	if _, err := ns.rawRequest(req, 0); err != nil {
		return fmt.Errorf("writing the IPv4 settings of %s: %w", l.Attrs().Name, err)
	}
	return nil
}
