package main

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"strings"
)

// A tiny line plotter writing PNG with the standard library only, so the
// benchmark needs no plotting module and no font files.

// series is one line of a panel.
type series struct {
	name   string
	color  color.RGBA
	xs, ys []float64
}

// panel is one chart: x on a log10 axis (container counts), y linear.
type panel struct {
	title, xlabel, ylabel string
	series                []series
}

var suiteColors = map[string]color.RGBA{
	"knit": {0x1b, 0x7f, 0x3b, 0xff},
	"deb":  {0x1f, 0x5f, 0xbf, 0xff},
	"new":  {0xc0, 0x39, 0x2b, 0xff},
}

type canvas struct{ img *image.RGBA }

func (c canvas) set(x, y int, col color.RGBA) {
	if image.Pt(x, y).In(c.img.Rect) {
		c.img.SetRGBA(x, y, col)
	}
}

// dot paints a size×size square centred near (x, y).
func (c canvas) dot(x, y, size int, col color.RGBA) {
	for dx := 0; dx < size; dx++ {
		for dy := 0; dy < size; dy++ {
			c.set(x+dx-size/2, y+dy-size/2, col)
		}
	}
}

// line draws from (x0,y0) to (x1,y1) with Bresenham's algorithm.
func (c canvas) line(x0, y0, x1, y1, width int, col color.RGBA) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := sign(x1-x0), sign(y1-y0)
	err := dx + dy
	for {
		c.dot(x0, y0, width, col)
		if x0 == x1 && y0 == y1 {
			return
		}
		e2 := 2 * err
		if e2 >= dy {
			err += dy
			x0 += sx
		}
		if e2 <= dx {
			err += dx
			y0 += sy
		}
	}
}

// text draws s with the 5×7 font scaled by scale; vertical writes upwards.
func (c canvas) text(x, y int, s string, scale int, col color.RGBA, vertical bool) {
	for i, r := range strings.ToUpper(s) {
		g, ok := glyphs[r]
		if !ok {
			continue
		}
		for row := 0; row < 7; row++ {
			for bit := 0; bit < 5; bit++ {
				if g[row]&(1<<(4-bit)) == 0 {
					continue
				}
				for sx := 0; sx < scale; sx++ {
					for sy := 0; sy < scale; sy++ {
						px, py := x+(i*6+bit)*scale+sx, y+row*scale+sy
						if vertical {
							px, py = x+row*scale+sy, y-(i*6+bit)*scale-sx
						}
						c.set(px, py, col)
					}
				}
			}
		}
	}
}

func textWidth(s string, scale int) int { return len([]rune(s)) * 6 * scale }

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

func sign(x int) int {
	switch {
	case x > 0:
		return 1
	case x < 0:
		return -1
	}
	return 0
}

// writePlot renders the panels side by side into a PNG file.
func writePlot(path, title string, panels []panel) error {
	const pw, ph, top = 560, 440, 40
	w, h := pw*len(panels), ph+top
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = 0xff
	}
	c := canvas{img}
	black := color.RGBA{0, 0, 0, 0xff}
	grey := color.RGBA{0xdd, 0xdd, 0xdd, 0xff}
	c.text((w-textWidth(title, 2))/2, 12, title, 2, black, false)
	for pi, p := range panels {
		ox := pi * pw
		left, right, ptop, bottom := ox+80, ox+pw-20, top+30, top+ph-60
		xmin, xmax, ymax := math.Inf(1), math.Inf(-1), 0.0
		for _, s := range p.series {
			for i := range s.xs {
				xmin, xmax = math.Min(xmin, math.Log10(s.xs[i])), math.Max(xmax, math.Log10(s.xs[i]))
				ymax = math.Max(ymax, s.ys[i])
			}
		}
		if xmax <= xmin {
			xmin, xmax = xmin-1, xmax+1
		}
		ystep := niceStep(ymax / 5)
		ymax = math.Ceil(ymax*1.05/ystep) * ystep
		if ymax == 0 {
			ymax, ystep = 1, 0.2
		}
		px := func(x float64) int {
			return left + int(float64(right-left)*(math.Log10(x)-xmin)/(xmax-xmin)+0.5)
		}
		py := func(y float64) int { return bottom - int(float64(bottom-ptop)*y/ymax+0.5) }
		for y := 0.0; y <= ymax+ystep/2; y += ystep {
			c.line(left, py(y), right, py(y), 1, grey)
			lbl := trimFloat(y)
			c.text(left-8-textWidth(lbl, 1), py(y)-3, lbl, 1, black, false)
		}
		xs := map[float64]bool{}
		for _, s := range p.series {
			for _, x := range s.xs {
				if !xs[x] {
					xs[x] = true
					c.line(px(x), ptop, px(x), bottom, 1, grey)
					lbl := trimFloat(x)
					c.text(px(x)-textWidth(lbl, 1)/2, bottom+8, lbl, 1, black, false)
				}
			}
		}
		c.line(left, bottom, right, bottom, 1, black)
		c.line(left, ptop, left, bottom, 1, black)
		c.text(ox+(pw-textWidth(p.title, 2))/2, top+4, p.title, 2, black, false)
		c.text(left+(right-left-textWidth(p.xlabel, 1))/2, bottom+24, p.xlabel, 1, black, false)
		c.text(ox+14, ptop+(bottom-ptop+textWidth(p.ylabel, 1))/2, p.ylabel, 1, black, true)
		for si, s := range p.series {
			for i := range s.xs {
				if i > 0 {
					c.line(px(s.xs[i-1]), py(s.ys[i-1]), px(s.xs[i]), py(s.ys[i]), 2, s.color)
				}
				c.dot(px(s.xs[i]), py(s.ys[i]), 6, s.color)
			}
			ly := bottom + 40
			lx := left + si*150
			c.line(lx, ly+3, lx+20, ly+3, 3, s.color)
			c.text(lx+26, ly, s.name, 1, black, false)
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// niceStep rounds a raw grid step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func trimFloat(x float64) string {
	s := fmt.Sprintf("%.1f", x)
	return strings.TrimSuffix(s, ".0")
}

// glyphs is a 5×7 bitmap font: seven rows, five bits each, left bit high.
var glyphs = map[rune][7]uint8{
	' ': {}, '.': {0, 0, 0, 0, 0, 0x0C, 0x0C}, ',': {0, 0, 0, 0, 0x0C, 0x04, 0x08},
	'-': {0, 0, 0, 0x1F, 0, 0, 0}, '+': {0, 0x04, 0x04, 0x1F, 0x04, 0x04, 0},
	'/': {0, 0x01, 0x02, 0x04, 0x08, 0x10, 0}, ':': {0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0},
	'(': {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02}, ')': {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08},
	'%': {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03}, '=': {0, 0, 0x1F, 0, 0x1F, 0, 0},
	'0': {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}, '1': {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E},
	'2': {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}, '3': {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E},
	'4': {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}, '5': {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E},
	'6': {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}, '7': {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08},
	'8': {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}, '9': {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C},
	'A': {0x0E, 0x11, 0x11, 0x11, 0x1F, 0x11, 0x11}, 'B': {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E},
	'C': {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E}, 'D': {0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C},
	'E': {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F}, 'F': {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10},
	'G': {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F}, 'H': {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11},
	'I': {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}, 'J': {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C},
	'K': {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11}, 'L': {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F},
	'M': {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11}, 'N': {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11},
	'O': {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}, 'P': {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10},
	'Q': {0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D}, 'R': {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11},
	'S': {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E}, 'T': {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04},
	'U': {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}, 'V': {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04},
	'W': {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A}, 'X': {0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11},
	'Y': {0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04}, 'Z': {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F},
}
