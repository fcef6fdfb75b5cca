package hostdevice

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/knit-cni/knit/internal/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// record is what ADD saves about a device before moving it, so DEL (or GC,
// after a crash or a lost DEL) can give it back to the host as it was. It
// is kept in <dataDir>/<network>/<containerID>_<ifname>.json. The original
// name is also in the device's alias, as the reference keeps it, so a
// device moved in without a record can still be returned by name.
type record struct {
	Network     string      `json:"network"`
	ContainerID string      `json:"containerID"`
	IfName      string      `json:"ifname"`
	Netns       string      `json:"netns"`
	Name        string      `json:"name"`
	Alias       string      `json:"alias,omitempty"`
	MAC         string      `json:"mac"`
	MTU         int         `json:"mtu"`
	Up          bool        `json:"up"`
	Addrs       []savedAddr `json:"addrs,omitempty"`
}

// savedAddr is one host address of the device.
type savedAddr struct {
	CIDR      string `json:"cidr"`
	Peer      string `json:"peer,omitempty"`
	Broadcast string `json:"broadcast,omitempty"`
	Label     string `json:"label,omitempty"`
	Scope     int    `json:"scope"`
	Flags     int    `json:"flags,omitempty"`
}

// settableAddrFlags are the IFA_F_ flags an address can be re-added with.
const settableAddrFlags = unix.IFA_F_NODAD | unix.IFA_F_NOPREFIXROUTE | unix.IFA_F_HOMEADDRESS | unix.IFA_F_MANAGETEMPADDR

type store struct{ dir string }

func (s store) path(network, id, ifname string) string {
	return filepath.Join(s.dir, network, id+"_"+ifname+".json")
}

// save writes r atomically.
func (s store) save(r *record) error {
	p := s.path(r.Network, r.ContainerID, r.IfName)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Dir(p), err)
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", p, err)
	}
	return nil
}

// load returns the record of an attachment, or nil if there is none.
func (s store) load(network, id, ifname string) (*record, error) {
	return readRecord(s.path(network, id, ifname))
}

func readRecord(p string) (*record, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("reading %s: %w", p, err)
	}
	r := &record{}
	if err := json.Unmarshal(b, r); err != nil {
		return nil, fmt.Errorf("%s is corrupt (%v): remove it once the device is back on the host", p, err)
	}
	return r, nil
}

// remove deletes an attachment's record; a missing one is fine.
func (s store) remove(network, id, ifname string) error {
	err := os.Remove(s.path(network, id, ifname))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// list returns the records of a network, with the files they came from.
func (s store) list(network string) ([]*record, error) {
	dir := filepath.Join(s.dir, network)
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("listing %s: %w", dir, err)
	}
	var out []*record
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		r, err := readRecord(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		if r != nil {
			out = append(out, r)
		}
	}
	return out, nil
}

// capture builds the record of the host device l before it moves.
func capture(host *link.Namespace, l netlink.Link) (*record, error) {
	a := l.Attrs()
	r := &record{Name: a.Name, Alias: a.Alias, MAC: a.HardwareAddr.String(), MTU: a.MTU, Up: a.Flags&net.FlagUp != 0}
	addrs, err := link.Dump(func() ([]netlink.Addr, error) { return host.Handle.AddrList(l, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, fmt.Errorf("listing the addresses of %s: %w", a.Name, err)
	}
	for _, ad := range addrs {
		if ad.IPNet == nil {
			continue
		}
		v6 := ad.IP.To4() == nil
		// The kernel makes link-local IPv6 addresses itself; autoconfigured
		// (non-permanent) ones come back from router adverts.
		if v6 && (ad.IP.IsLinkLocalUnicast() || ad.Flags&unix.IFA_F_PERMANENT == 0) {
			continue
		}
		s := savedAddr{CIDR: ad.IPNet.String(), Label: ad.Label, Scope: ad.Scope, Flags: ad.Flags & settableAddrFlags}
		if ad.Peer != nil {
			s.Peer = ad.Peer.String()
		}
		if ad.Broadcast != nil {
			s.Broadcast = ad.Broadcast.String()
		}
		r.Addrs = append(r.Addrs, s)
	}
	return r, nil
}

// restoreAddrs puts the saved addresses back on l (those already there are
// skipped) and sets it up if it was up.
func restoreAddrs(host *link.Namespace, l netlink.Link, r *record) error {
	var errs []error
	for _, s := range r.Addrs {
		ip, n, err := net.ParseCIDR(s.CIDR)
		if err != nil {
			errs = append(errs, fmt.Errorf("saved address %q is invalid", s.CIDR))
			continue
		}
		n.IP = ip
		a := &netlink.Addr{IPNet: n, Scope: s.Scope, Flags: s.Flags}
		if s.Label != "" && strings.HasPrefix(s.Label, l.Attrs().Name) {
			a.Label = s.Label
		}
		if s.Peer != "" {
			if pip, p, err := net.ParseCIDR(s.Peer); err == nil {
				p.IP = pip
				a.Peer = p
			}
		}
		if s.Broadcast != "" {
			a.Broadcast = net.ParseIP(s.Broadcast)
		}
		if err := host.Handle.AddrAdd(l, a); err != nil && !errors.Is(err, unix.EEXIST) {
			errs = append(errs, fmt.Errorf("restoring address %s on %s: %w", s.CIDR, l.Attrs().Name, err))
		}
	}
	if r.Up {
		if err := host.Handle.LinkSetUp(l); err != nil {
			errs = append(errs, fmt.Errorf("setting %s up: %w", l.Attrs().Name, err))
		}
	}
	return errors.Join(errs...)
}
