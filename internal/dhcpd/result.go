package dhcpd

import (
	"net"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/knit-cni/knit/pkg/cni"
)

// resultOf turns an ACK into the CNI result: the address with the subnet
// mask and first router as gateway; classless static routes when the server
// sent them (RFC 3442: then the router option and option 33 are ignored),
// otherwise option 33's static routes and a default route via the router; name servers, domain and search
// list. priority, when set, becomes every route's metric.
func resultOf(ack *dhcpv4.DHCPv4, priority int) *cni.Result {
	res := &cni.Result{CNIVersion: cni.Version110}
	mask := ack.SubnetMask()
	if mask == nil {
		mask = ack.YourIPAddr.DefaultMask()
	}
	var gw net.IP
	if r := ack.Router(); len(r) > 0 {
		gw = r[0].To4()
	}
	res.IPs = []*cni.IPConfig{{Address: net.IPNet{IP: ack.YourIPAddr.To4(), Mask: mask}, Gateway: gw}}
	if routes := ack.ClasslessStaticRoute(); len(routes) > 0 {
		for _, r := range routes {
			rt := &cni.Route{Dst: *r.Dest, Priority: priority}
			if !r.Router.IsUnspecified() {
				rt.GW = r.Router.To4()
			}
			res.Routes = append(res.Routes, rt)
		}
	} else {
		res.Routes = append(res.Routes, staticRoutes(ack.Options.Get(dhcpv4.OptionStaticRoutingTable), priority)...)
		if gw != nil {
			res.Routes = append(res.Routes, &cni.Route{
				Dst: net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, GW: gw, Priority: priority,
			})
		}
	}
	for _, ip := range ack.DNS() {
		res.DNS.Nameservers = append(res.DNS.Nameservers, ip.String())
	}
	res.DNS.Domain = ack.DomainName()
	if labels := ack.DomainSearch(); labels != nil {
		res.DNS.Search = labels.Labels
	}
	return res
}

// staticRoutes decodes option 33 (RFC 2132 section 5.8): destination and
// router pairs of IPv4 addresses, each destination with its classful mask
// (as the reference plugin reads it; host bits cleared, which the kernel
// requires of a route). The default destination is illegal
// there and skipped, as are multicast and reserved destinations and a
// trailing partial pair.
func staticRoutes(b []byte, priority int) []*cni.Route {
	var out []*cni.Route
	for ; len(b) >= 8; b = b[8:] {
		dst, gw := net.IP(append([]byte(nil), b[:4]...)), net.IP(append([]byte(nil), b[4:8]...))
		if dst.IsUnspecified() {
			continue
		}
		if dst[0] >= 224 {
			continue // class D or E: no classful network
		}
		mask := dst.DefaultMask()
		out = append(out, &cni.Route{Dst: net.IPNet{IP: dst.Mask(mask), Mask: mask}, GW: gw, Priority: priority})
	}
	return out
}
