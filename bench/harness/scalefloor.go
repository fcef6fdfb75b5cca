package main

import (
	"encoding/json"
	"fmt"
	"image/color"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
)

// The scale floor: at each scale level, the in-process netlink work of one
// bridge attachment (floorAdd: veth into the container, port on the bridge,
// address, default route) and of its removal (deleting the container's
// veth), done on the very bridge that holds the level's attached
// containers, in the same host namespace, with no exec and no IPAM or
// nftables. What the kernel's own costs do with the number of ports (the
// bridge walks its port list when a port joins, leaves or changes state)
// shows here; what grows in a plugin beyond this is the plugin's.

// floorSuite is the suite whose host namespace carries the floor samples.
const floorSuite = "knit"

// floorGap separates a floor sample from the probe ADD before it.
const floorGap = 100 * time.Millisecond

// floorColor draws the floor in the scale plot.
var floorColor = color.RGBA{0x70, 0x70, 0x70, 0xff}

// scaleFloor samples the floor against one host's bridge.
type scaleFloor struct {
	h  *host
	hh vnetns.NsHandle
	hn *netlink.Handle
	br netlink.Link
	n  int // samples taken, to name the host ends
}

// bridgeName reads the first plugin's "bridge" out of the network's conflist.
func bridgeName(n network) (string, error) {
	conf := n.conf
	if strings.Contains(conf, "%q") {
		conf = fmt.Sprintf(conf, "/x")
	}
	var c struct {
		Plugins []struct {
			Bridge string `json:"bridge"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal([]byte(conf), &c); err != nil || len(c.Plugins) == 0 || c.Plugins[0].Bridge == "" {
		return "", fmt.Errorf("scale floor: network %s names no bridge", n.key)
	}
	return c.Plugins[0].Bridge, nil
}

// openScaleFloor opens h's namespace and the network's bridge there (made by
// the plugins when the level was filled). Close releases them.
func openScaleFloor(h *host) (*scaleFloor, error) {
	name, err := bridgeName(h.net)
	if err != nil {
		return nil, err
	}
	f := &scaleFloor{h: h}
	if f.hh, err = vnetns.GetFromPath(h.path); err != nil {
		return nil, err
	}
	if f.hn, err = netlink.NewHandleAt(f.hh); err != nil {
		f.hh.Close()
		return nil, err
	}
	if f.br, err = f.hn.LinkByName(name); err != nil {
		f.close()
		return nil, fmt.Errorf("scale floor: bridge %s in %s: %w", name, h.path, err)
	}
	return f, nil
}

func (f *scaleFloor) close() {
	if f == nil {
		return
	}
	if f.hn != nil {
		f.hn.Close()
	}
	f.hh.Close()
}

// sample times one floor ADD and its DEL in a fresh container namespace,
// which it removes again, so the bridge holds at most one floor port.
func (f *scaleFloor) sample() (add, del float64, err error) {
	cs, err := f.h.newContainers(1, 0)
	if err != nil {
		return 0, 0, err
	}
	defer closeContainers(cs)
	f.n++
	idx := 100 + f.n%100 // host end kbfl<idx>, container address 10.96.0.<idx+2>
	d, err := floorAdd(f.hn, f.br, cs[0].ns, idx)
	if err != nil {
		// Leave no port behind on the measured bridge.
		if l, lerr := f.hn.LinkByName(fmt.Sprintf("kbfl%d", idx)); lerr == nil {
			_ = f.hn.LinkDel(l)
		}
		return 0, 0, fmt.Errorf("scale floor ADD: %w", err)
	}
	start := time.Now()
	ch, err := vnetns.GetFromPath(cs[0].ns)
	if err != nil {
		return 0, 0, err
	}
	defer ch.Close()
	cn, err := netlink.NewHandleAt(ch)
	if err != nil {
		return 0, 0, err
	}
	defer cn.Close()
	eth, err := cn.LinkByName("eth0")
	if err == nil {
		err = cn.LinkDel(eth)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("scale floor DEL: %w", err)
	}
	return ms(d), ms(time.Since(start)), nil
}

// floorSample adds one floor sample to p when f is open (the floor suite's
// turn); it is the hook measureScale calls after each probe ADD.
func (f *scaleFloor) floorSample(p *scalePoint) error {
	if f == nil {
		return nil
	}
	// Let the probe's asynchronous kernel work (its port coming up, the
	// closer releasing nftables sockets) finish first: measured right
	// after an exec'd ADD, the floor doubled at 10 attached.
	time.Sleep(floorGap)
	a, d, err := f.sample()
	if err != nil {
		return err
	}
	p.floorAdd, p.floorDel = append(p.floorAdd, a), append(p.floorDel, d)
	return nil
}

// scaleFloorFor opens the floor when s is the floor suite, else returns nil.
func scaleFloorFor(s suite, h *host) (*scaleFloor, error) {
	if s.name != floorSuite {
		return nil, nil
	}
	return openScaleFloor(h)
}

// floorSeries is the floor's line in the scale plot (ADD and DEL panels).
func floorSeries(ps []scalePoint) (add, del series, ok bool) {
	add = series{name: "floor", color: floorColor}
	del = add
	for _, p := range ps {
		if len(p.floorAdd) == 0 {
			continue
		}
		add.xs, add.ys = append(add.xs, float64(p.attached)), append(add.ys, median(p.floorAdd))
		del.xs, del.ys = append(del.xs, float64(p.attached)), append(del.ys, median(p.floorDel))
	}
	return add, del, len(add.xs) > 0
}

// scaleGrowth is the report's table of growth: each level's median ÷ the
// first level's, for every suite's ADD and DEL and the floor's.
func (r *results) scaleGrowth() string {
	var b strings.Builder
	base := r.scale[floorSuite]
	if len(base) < 2 {
		return ""
	}
	first := base[0]
	fmt.Fprintf(&b, "Growth: median at each level ÷ median at %d attached (the floor: the same netlink work in process, on the same bridge, in knit's host namespace, sampled between knit's probes).\n\n", first.attached)
	b.WriteString("| attached |")
	var cols []func(i int) string
	ratioAt := func(get func(p scalePoint) []float64, ps []scalePoint) func(i int) string {
		return func(i int) string {
			if i >= len(ps) || len(get(ps[0])) == 0 || len(get(ps[i])) == 0 {
				return "—"
			}
			return fmt.Sprintf("%.2f", median(get(ps[i]))/median(get(ps[0])))
		}
	}
	for _, op := range []string{"ADD", "DEL"} {
		get := func(p scalePoint) []float64 { return p.add }
		fget := func(p scalePoint) []float64 { return p.floorAdd }
		if op == "DEL" {
			get = func(p scalePoint) []float64 { return p.del }
			fget = func(p scalePoint) []float64 { return p.floorDel }
		}
		for _, s := range r.suites {
			if ps := r.scale[s.name]; len(ps) > 1 {
				fmt.Fprintf(&b, " %s %s |", s.name, op)
				cols = append(cols, ratioAt(get, ps))
			}
		}
		fmt.Fprintf(&b, " floor %s |", op)
		cols = append(cols, ratioAt(fget, base))
	}
	b.WriteString("\n|---|" + strings.Repeat("---|", len(cols)) + "\n")
	for i, p := range base {
		fmt.Fprintf(&b, "| %d |", p.attached)
		for _, c := range cols {
			fmt.Fprintf(&b, " %s |", c(i))
		}
		b.WriteString("\n")
	}
	last := base[len(base)-1]
	if len(last.floorAdd) > 0 && len(first.floorAdd) > 0 {
		fmt.Fprintf(&b, "\nknit ADD grew by %.1f ms from %d to %d attached; the floor ADD by %.1f ms. knit DEL grew by %.1f ms; the floor DEL by %.1f ms.\n",
			median(last.add)-median(first.add), first.attached, last.attached, median(last.floorAdd)-median(first.floorAdd),
			median(last.del)-median(first.del), median(last.floorDel)-median(first.floorDel))
	}
	return b.String()
}
