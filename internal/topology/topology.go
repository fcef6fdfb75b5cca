// Package topology reads what a set of network namespaces holds — links,
// addresses, bridge ports, veth pairs across namespaces, routes — into one
// model, and renders it as short readable text. `knit demo` prints it; the
// visualizer serves the same model as JSON.
package topology

import (
	"fmt"
	"net"
	"sort"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NS names one namespace to capture.
type NS struct {
	Name string // a label for people ("host", "ns1", …)
	Path string // its path, e.g. /run/netns/x
}

// Snapshot is the captured topology.
type Snapshot struct {
	Namespaces []*Namespace `json:"namespaces"`
}

// Namespace is one network namespace and its links.
type Namespace struct {
	Name   string   `json:"name"`
	Path   string   `json:"path"`
	Links  []*Link  `json:"links"`
	Routes []string `json:"routes,omitempty"`
}

// Link is one interface.
type Link struct {
	Index    int      `json:"index"`
	Name     string   `json:"name"`
	Type     string   `json:"type"`
	MAC      string   `json:"mac,omitempty"`
	MTU      int      `json:"mtu"`
	Up       bool     `json:"up"`
	Master   string   `json:"master,omitempty"`
	Addrs    []string `json:"addrs,omitempty"`
	Hairpin  bool     `json:"hairpin,omitempty"`
	Isolated bool     `json:"isolated,omitempty"`
	// Peer is the other end of a veth pair, when it is in a captured namespace.
	Peer *Ref `json:"peer,omitempty"`

	peerIndex int
	peerNSID  int
}

// Ref points at a link in a namespace of the snapshot.
type Ref struct {
	Namespace string `json:"namespace"`
	Link      string `json:"link"`
}

// Capture reads every namespace in order and links veth peers across them.
func Capture(nss []NS) (*Snapshot, error) {
	s := &Snapshot{}
	handles := make([]vnetns.NsHandle, 0, len(nss))
	nls := make([]*netlink.Handle, 0, len(nss))
	defer func() {
		for _, nl := range nls {
			nl.Close()
		}
		for _, h := range handles {
			h.Close()
		}
	}()
	for _, ns := range nss {
		h, err := vnetns.GetFromPath(ns.Path)
		if err != nil {
			return nil, fmt.Errorf("opening namespace %s (%s): %w", ns.Name, ns.Path, err)
		}
		handles = append(handles, h)
		nl, err := netlink.NewHandleAt(h)
		if err != nil {
			return nil, fmt.Errorf("netlink in namespace %s: %w", ns.Name, err)
		}
		nls = append(nls, nl)
		n, err := captureOne(nl, ns)
		if err != nil {
			return nil, fmt.Errorf("reading namespace %s (%s): %w", ns.Name, ns.Path, err)
		}
		s.Namespaces = append(s.Namespaces, n)
	}
	// peers[i][id] is the namespace that namespace i calls id (IFLA_LINK_NETNSID).
	peers := make([]map[int]int, len(nss))
	for i := range nss {
		peers[i] = map[int]int{}
		for j := range nss {
			if i == j {
				continue
			}
			if id, err := nls[i].GetNetNsIdByFd(int(handles[j])); err == nil && id >= 0 {
				peers[i][id] = j
			}
		}
	}
	s.pairVeths(peers)
	return s, nil
}

func captureOne(nl *netlink.Handle, ns NS) (*Namespace, error) {
	links, err := nl.LinkList()
	if err != nil {
		return nil, err
	}
	out := &Namespace{Name: ns.Name, Path: ns.Path}
	names := map[int]string{}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	for _, l := range links {
		a := l.Attrs()
		lk := &Link{
			Index: a.Index, Name: a.Name, Type: l.Type(), MTU: a.MTU,
			Up:     a.Flags&net.FlagUp != 0,
			Master: names[a.MasterIndex],
		}
		if len(a.HardwareAddr) > 0 {
			lk.MAC = a.HardwareAddr.String()
		}
		if l.Type() == "veth" {
			lk.peerIndex, lk.peerNSID = a.ParentIndex, a.NetNsID
		}
		if a.MasterIndex != 0 && a.Protinfo != nil {
			lk.Hairpin, lk.Isolated = a.Protinfo.Hairpin, a.Protinfo.Isolated
		} else if a.MasterIndex != 0 {
			if pi, err := nl.LinkGetProtinfo(l); err == nil {
				lk.Hairpin, lk.Isolated = pi.Hairpin, pi.Isolated
			}
		}
		addrs, err := nl.AddrList(l, unix.AF_UNSPEC)
		if err != nil {
			return nil, err
		}
		for _, ad := range addrs {
			if ad.IP.IsLinkLocalUnicast() {
				continue
			}
			lk.Addrs = append(lk.Addrs, ad.IPNet.String())
		}
		out.Links = append(out.Links, lk)
	}
	sort.Slice(out.Links, func(i, j int) bool { return out.Links[i].Index < out.Links[j].Index })
	routes, err := nl.RouteList(nil, unix.AF_UNSPEC)
	if err != nil {
		return nil, err
	}
	for _, r := range routes {
		out.Routes = append(out.Routes, routeText(r, names))
	}
	return out, nil
}

func routeText(r netlink.Route, names map[int]string) string {
	dst := "default"
	if r.Dst != nil && !(r.Dst.IP.IsUnspecified() && isZeroMask(r.Dst.Mask)) {
		dst = r.Dst.String()
	}
	s := dst
	if r.Gw != nil {
		s += " via " + r.Gw.String()
	}
	if n := names[r.LinkIndex]; n != "" {
		s += " dev " + n
	}
	return s
}

func isZeroMask(m net.IPMask) bool {
	ones, _ := m.Size()
	return ones == 0
}

// pairVeths resolves each veth's peer: in the namespace its link-netnsid
// names (or its own namespace when it has none), the link at its peer index.
func (s *Snapshot) pairVeths(peers []map[int]int) {
	for i, ns := range s.Namespaces {
		for _, l := range ns.Links {
			if l.Type != "veth" || l.peerIndex == 0 {
				continue
			}
			target := i
			if l.peerNSID >= 0 {
				j, ok := peers[i][l.peerNSID]
				if !ok {
					continue // peer is in a namespace we did not capture
				}
				target = j
			}
			for _, p := range s.Namespaces[target].Links {
				if p.Index == l.peerIndex {
					l.Peer = &Ref{Namespace: s.Namespaces[target].Name, Link: p.Name}
				}
			}
		}
	}
}
