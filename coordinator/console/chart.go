package console

import (
	"fmt"
	"html"
	"html/template"
	"math"
	"strings"
)

// Charts are SVG drawn here, inline in the page: no script, no library,
// and presentation attributes only (the console's CSP forbids inline
// styles).

// point is one value of a series: Y at round X.
type point struct{ X, Y float64 }

// series is one line of a chart.
type series struct {
	Name   string
	Color  string
	Points []point
}

const (
	chartW, chartH                   = 600, 220
	padL, padR, padT, padB           = 56, 14, 26, 30
	plotW, plotH                     = chartW - padL - padR, chartH - padT - padB
	colorBlue, colorOrange, colorRed = "#2563eb", "#ea580c", "#dc2626"
	colorGreen, colorGrey            = "#16a34a", "#9ca3af"
)

// lineChart draws series against the round number, with a title, four
// value ticks and a legend. id names the chart in the page.
func lineChart(id, title string, ss []series) template.HTML {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" id="%s" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-label="%s" xmlns="http://www.w3.org/2000/svg">`,
		html.EscapeString(id), chartW, chartH, chartW, chartH, html.EscapeString(title))
	fmt.Fprintf(&b, `<text x="%d" y="16" font-size="13" font-weight="600" fill="#111827">%s</text>`, padL, html.EscapeString(title))
	xmin, xmax, ymin, ymax := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	n := 0
	for _, s := range ss {
		for _, p := range s.Points {
			if math.IsNaN(p.Y) || math.IsInf(p.Y, 0) {
				continue
			}
			xmin, xmax = min(xmin, p.X), max(xmax, p.X)
			ymin, ymax = min(ymin, p.Y), max(ymax, p.Y)
			n++
		}
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="#ffffff" stroke="#e5e7eb"/>`, padL, padT, plotW, plotH)
	if n == 0 {
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="12" fill="#6b7280" text-anchor="middle">no committed round yet</text></svg>`, padL+plotW/2, padT+plotH/2)
		return template.HTML(b.String())
	}
	if xmax == xmin {
		xmin, xmax = xmin-1, xmax+1
	}
	if ymax == ymin {
		d := math.Max(math.Abs(ymin)*0.1, 0.05)
		ymin, ymax = ymin-d, ymax+d
	} else {
		d := (ymax - ymin) * 0.08
		ymin, ymax = ymin-d, ymax+d
	}
	px := func(x float64) float64 { return padL + (x-xmin)/(xmax-xmin)*plotW }
	py := func(y float64) float64 { return padT + (ymax-y)/(ymax-ymin)*plotH }
	for i := 0; i <= 4; i++ {
		y := ymin + (ymax-ymin)*float64(i)/4
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#f3f4f6"/>`, padL, padL+plotW, py(y), py(y))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" font-size="10" fill="#6b7280" text-anchor="end">%s</text>`, padL-4, py(y)+3, fmtTick(y))
	}
	step := math.Max(1, math.Ceil((xmax-xmin)/10))
	for x := math.Ceil(xmin); x <= xmax; x += step {
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="10" fill="#6b7280" text-anchor="middle">%g</text>`, px(x), padT+plotH+14, x)
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="10" fill="#6b7280" text-anchor="middle">round</text>`, padL+plotW/2, chartH-2)
	for i, s := range ss {
		var pts []string
		for _, p := range s.Points {
			if math.IsNaN(p.Y) || math.IsInf(p.Y, 0) {
				continue
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(p.X), py(p.Y)))
		}
		if len(pts) > 1 {
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`, s.Color, strings.Join(pts, " "))
		}
		for _, p := range s.Points {
			if math.IsNaN(p.Y) || math.IsInf(p.Y, 0) {
				continue
			}
			fmt.Fprintf(&b, `<circle class="pt" cx="%.1f" cy="%.1f" r="3" fill="%s"><title>%s, round %g: %s</title></circle>`,
				px(p.X), py(p.Y), s.Color, html.EscapeString(s.Name), p.X, fmtNum(p.Y))
		}
		lx := chartW - padR - 150*(len(ss)-i)
		fmt.Fprintf(&b, `<rect x="%d" y="8" width="10" height="10" fill="%s"/><text x="%d" y="17" font-size="11" fill="#374151">%s</text>`,
			lx, s.Color, lx+14, html.EscapeString(s.Name))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

func fmtTick(v float64) string {
	if math.Abs(v) >= 1000 || (math.Abs(v) < 0.01 && v != 0) {
		return fmt.Sprintf("%.2g", v)
	}
	return fmt.Sprintf("%.3g", v)
}

// bar is one row of a stage chart: a duration, and how many of the
// expected agents survived the stage.
type bar struct {
	Label              string
	Seconds            float64
	Expected, Survived int
}

// stageChart draws a round's stages as horizontal bars: the bar's length
// is the stage's time, its text the survivors and dropouts.
func stageChart(rows []bar) template.HTML {
	const rowH, labelW, w = 26, 140, 600
	h := rowH*len(rows) + 10
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" id="stages" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-label="time by stage" xmlns="http://www.w3.org/2000/svg">`, w, h, w, h)
	longest := 0.0
	for _, r := range rows {
		longest = max(longest, r.Seconds)
	}
	for i, r := range rows {
		y := 5 + i*rowH
		bw := 0.0
		if longest > 0 {
			bw = r.Seconds / longest * (w - labelW - 190)
		}
		color := colorBlue
		if r.Survived < r.Expected {
			color = colorOrange
		}
		fmt.Fprintf(&b, `<text x="0" y="%d" font-size="12" fill="#111827">%s</text>`, y+15, html.EscapeString(r.Label))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="18" fill="%s"/>`, labelW, y+2, max(bw, 1), color)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="11" fill="#374151">%s · %d/%d kept, %d dropped</text>`,
			float64(labelW)+max(bw, 1)+6, y+15, fmtSeconds(r.Seconds), r.Survived, r.Expected, r.Expected-r.Survived)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

func fmtSeconds(s float64) string {
	switch {
	case s < 0.001:
		return fmt.Sprintf("%.0f µs", s*1e6)
	case s < 1:
		return fmt.Sprintf("%.0f ms", s*1e3)
	}
	return fmt.Sprintf("%.2f s", s)
}
