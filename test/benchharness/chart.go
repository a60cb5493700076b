package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// chart draws throughput against connections for op, one line per system,
// as a self-contained SVG (log2 x axis, linear y axis from 0).
func chart(rows []row, op string) string {
	const w, h, left, right, top, bottom = 640, 360, 80, 150, 30, 50
	series := map[string][]row{}
	var systems []string
	var conns []int
	maxY := 1.0
	for _, r := range rows {
		if r.op != op {
			continue
		}
		if _, ok := series[r.system]; !ok {
			systems = append(systems, r.system)
		}
		series[r.system] = append(series[r.system], r)
		if !slices.Contains(conns, r.conns) {
			conns = append(conns, r.conns)
		}
		maxY = max(maxY, r.opsPerSec)
	}
	slices.Sort(conns)
	if len(conns) == 0 {
		return `<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>`
	}
	lo, hi := math.Log2(float64(conns[0])), math.Log2(float64(conns[len(conns)-1]))
	x := func(c int) float64 {
		if hi == lo {
			return left + (w-left-right)/2
		}
		return left + (math.Log2(float64(c))-lo)/(hi-lo)*(w-left-right)
	}
	y := func(v float64) float64 { return top + (1-v/maxY)*(h-top-bottom) }
	colors := []string{"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", w, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/><text x="%d" y="18" font-size="14">%s throughput (ops/s) against connections</text>`+"\n", left, op)
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/><line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n",
		left, h-bottom, w-right, h-bottom, left, top, left, h-bottom)
	for i := 0; i <= 4; i++ {
		v := maxY * float64(i) / 4
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%.0f</text><line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`+"\n",
			left-6, y(v)+4, v, left, y(v), w-right, y(v))
	}
	for _, c := range conns {
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%d</text>`+"\n", x(c), h-bottom+18, c)
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">connections</text>`+"\n", (left+w-right)/2, h-12)
	for i, s := range systems {
		col := colors[i%len(colors)]
		pts := series[s]
		slices.SortFunc(pts, func(a, b row) int { return a.conns - b.conns })
		var path []string
		for _, p := range pts {
			path = append(path, fmt.Sprintf("%.1f,%.1f", x(p.conns), y(p.opsPerSec)))
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", x(p.conns), y(p.opsPerSec), col)
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", col, strings.Join(path, " "))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="12" height="12" fill="%s"/><text x="%d" y="%d">%s</text>`+"\n", w-right+12, top+i*20, col, w-right+30, top+i*20+10, s)
	}
	b.WriteString("</svg>\n")
	return b.String()
}
