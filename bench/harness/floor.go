package main

import (
	"fmt"
	"net"
	"os/exec"
	"time"

	"github.com/knit-cni/knit/internal/netns"
	"github.com/knit-cni/knit/internal/nft"
	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
)

// floorResult holds the no-exec floor: the kernel work of a bridge ADD and
// DEL done from one long-lived Go process, and the cost of exec alone.
type floorResult struct {
	linkAdd, linkDel []float64 // veth + bridge port + address + route; delete the veth
	masqAdd, masqDel []float64 // knit's nftables masquerade for one address
	masqAddClose     []float64 // closing the sockets after an Add (the kernel's RCU wait)
	masqDelClose     []float64
	exitPlain        []float64 // a process's exit, from its last output to its reaping
	exitAfterNft     []float64 // the same after one nftables change, sockets left open
	exitHandOff      []float64 // the same, the sockets handed to knit-plugin's closer after the output
	execTrue         []float64 // fork+exec+wait of /bin/true
	execPlugin       []float64 // knit-plugin VERSION: the Go plugin's start-up
	execCnitool      []float64 // cnitool with the loopback network: runtime + one plugin
}

// measureFloor times the netlink operations of one bridge attachment in
// process, in fresh namespaces like the plugin suites.
func (l *lab) measureFloor(knit suite, samples int) (*floorResult, error) {
	fr := &floorResult{}
	h, err := l.newHost(knit, networkByKey("lo"))
	if err != nil {
		return nil, err
	}
	defer h.close()
	hh, err := vnetns.GetFromPath(h.path)
	if err != nil {
		return nil, err
	}
	defer hh.Close()
	hn, err := netlink.NewHandleAt(hh)
	if err != nil {
		return nil, err
	}
	defer hn.Close()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "kbflbr"}}
	if err := hn.LinkAdd(br); err != nil {
		return nil, err
	}
	gw, _ := netlink.ParseAddr("10.96.0.1/16")
	if err := hn.AddrAdd(br, gw); err != nil {
		return nil, err
	}
	if err := hn.LinkSetUp(br); err != nil {
		return nil, err
	}
	cs, err := h.newContainers(samples, 0)
	if err != nil {
		return nil, err
	}
	defer closeContainers(cs)
	for i, c := range cs {
		d, err := floorAdd(hn, br, c.ns, i)
		if err != nil {
			return nil, err
		}
		fr.linkAdd = append(fr.linkAdd, ms(d))
	}
	for _, c := range cs {
		start := time.Now()
		ch, err := vnetns.GetFromPath(c.ns)
		if err != nil {
			return nil, err
		}
		cn, err := netlink.NewHandleAt(ch)
		if err == nil {
			var ln netlink.Link
			if ln, err = cn.LinkByName("eth0"); err == nil {
				err = cn.LinkDel(ln)
			}
			cn.Close()
		}
		ch.Close()
		if err != nil {
			return nil, fmt.Errorf("floor: deleting the veth: %w", err)
		}
		fr.linkDel = append(fr.linkDel, ms(time.Since(start)))
	}

	// knit's masquerade, one address per container, as a plugin would do
	// it: a fresh Masq (new netlink sockets) for each operation.
	for i := 0; i < samples; i++ {
		o := nft.Owner{Network: "kbfloor", ContainerID: fmt.Sprintf("c%d", i), IfName: "eth0"}
		addr := []net.IPNet{{IP: net.IPv4(10, 96, 1, byte(i+2)), Mask: net.CIDRMask(16, 32)}}
		var dAdd, dDel, cAdd, cDel time.Duration
		err := netns.Do(h.path, func() error {
			m := nft.NewMasq()
			start := time.Now()
			err := m.Add(o, addr)
			dAdd = time.Since(start)
			m.Close()
			cAdd = time.Since(start) - dAdd
			if err != nil {
				return err
			}
			m = nft.NewMasq()
			start = time.Now()
			err = m.Del(o, addr)
			dDel = time.Since(start)
			m.Close()
			cDel = time.Since(start) - dDel
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("floor: masquerade: %w", err)
		}
		fr.masqAdd = append(fr.masqAdd, ms(dAdd))
		fr.masqDel = append(fr.masqDel, ms(dDel))
		fr.masqAddClose = append(fr.masqAddClose, ms(cAdd))
		fr.masqDelClose = append(fr.masqDelClose, ms(cDel))
	}

	for i := 0; i < samples; i++ {
		a, err := h.exitWait("plain")
		if err != nil {
			return nil, err
		}
		b, err := h.exitWait("nft")
		if err != nil {
			return nil, err
		}
		c, err := h.exitWait("nft-handoff")
		if err != nil {
			return nil, err
		}
		fr.exitPlain, fr.exitAfterNft = append(fr.exitPlain, a), append(fr.exitAfterNft, b)
		fr.exitHandOff = append(fr.exitHandOff, c)
	}

	lo := networkByKey("lo")
	hl, err := l.newHost(knit, lo)
	if err != nil {
		return nil, err
	}
	defer hl.close()
	probe, err := hl.newContainers(1, 0)
	if err != nil {
		return nil, err
	}
	defer closeContainers(probe)
	for i := 0; i < samples; i++ {
		start := time.Now()
		if err := exec.Command("/bin/true").Run(); err != nil {
			return nil, err
		}
		fr.execTrue = append(fr.execTrue, ms(time.Since(start)))
		cmd := exec.Command(knit.dir + "/loopback")
		cmd.Env = []string{"CNI_COMMAND=VERSION"}
		start = time.Now()
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("floor: knit-plugin VERSION: %w", err)
		}
		fr.execPlugin = append(fr.execPlugin, ms(time.Since(start)))
		d, err := hl.run("add", probe[0])
		if err != nil {
			return nil, err
		}
		fr.execCnitool = append(fr.execCnitool, ms(d))
		if _, err := hl.run("del", probe[0]); err != nil {
			return nil, err
		}
	}
	return fr, nil
}

// floorAdd does what a bridge ADD does to links, in process: a veth pair
// with its peer in the container, the host end on the bridge and up, the
// container end addressed and up with a default route.
func floorAdd(hn *netlink.Handle, br netlink.Link, nsPath string, i int) (time.Duration, error) {
	start := time.Now()
	ch, err := vnetns.GetFromPath(nsPath)
	if err != nil {
		return 0, err
	}
	defer ch.Close()
	cn, err := netlink.NewHandleAt(ch)
	if err != nil {
		return 0, err
	}
	defer cn.Close()
	hostName := fmt.Sprintf("kbfl%d", i)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: hostName, MasterIndex: br.Attrs().Index}, PeerName: "eth0", PeerNamespace: netlink.NsFd(ch)}
	if err := hn.LinkAdd(veth); err != nil {
		return 0, fmt.Errorf("floor: veth: %w", err)
	}
	if err := hn.LinkSetUp(veth); err != nil {
		return 0, err
	}
	eth, err := cn.LinkByName("eth0")
	if err != nil {
		return 0, err
	}
	a, _ := netlink.ParseAddr(fmt.Sprintf("10.96.0.%d/16", i+2))
	if err := cn.AddrAdd(eth, a); err != nil {
		return 0, err
	}
	if err := cn.LinkSetUp(eth); err != nil {
		return 0, err
	}
	if err := cn.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: net.IPv4(10, 96, 0, 1)}); err != nil {
		return 0, fmt.Errorf("floor: default route: %w", err)
	}
	return time.Since(start), nil
}
