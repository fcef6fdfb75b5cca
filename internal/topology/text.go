package topology

import (
	"fmt"
	"io"
	"strings"
)

// Text writes the snapshot as short readable text: per namespace, its links
// with type, state, addresses, bridge master and port flags, and veth peers.
func (s *Snapshot) Text(w io.Writer) {
	for _, ns := range s.Namespaces {
		fmt.Fprintf(w, "namespace %s  (%s)\n", ns.Name, ns.Path)
		for _, l := range ns.Links {
			state := "down"
			if l.Up {
				state = "up"
			}
			var extra []string
			if l.Master != "" {
				port := "port of " + l.Master
				if l.Hairpin {
					port += " [hairpin]"
				}
				if l.Isolated {
					port += " [isolated]"
				}
				extra = append(extra, port)
			}
			if l.Type == "bridge" {
				var ports []string
				for _, p := range ns.Links {
					if p.Master == l.Name {
						ports = append(ports, p.Name)
					}
				}
				if len(ports) > 0 {
					extra = append(extra, "ports: "+strings.Join(ports, ", "))
				}
			}
			if l.Peer != nil {
				extra = append(extra, fmt.Sprintf("<-> %s:%s", l.Peer.Namespace, l.Peer.Link))
			}
			addrs := strings.Join(l.Addrs, " ")
			if addrs == "" {
				addrs = "-"
			}
			fmt.Fprintf(w, "  %-14s %-8s %-4s %-32s %s\n", l.Name, l.Type, state, addrs, strings.Join(extra, "  "))
		}
		for _, r := range ns.Routes {
			if strings.HasPrefix(r, "fe80::/64 ") {
				continue // every IPv6 link has one; they say nothing
			}
			fmt.Fprintf(w, "  route %s\n", r)
		}
	}
}
