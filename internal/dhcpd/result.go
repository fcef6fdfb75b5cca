package dhcpd

import (
	"net"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/knit-cni/knit/pkg/cni"
)

// resultOf turns an ACK into the CNI result: the address with the subnet
// mask and first router as gateway; classless static routes when the server
// sent them (RFC 3442: then the router option gives no default route),
// otherwise a default route via the router; name servers, domain and search
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
	} else if gw != nil {
		res.Routes = append(res.Routes, &cni.Route{
			Dst: net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, GW: gw, Priority: priority,
		})
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
