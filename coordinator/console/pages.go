package console

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"maps"
	"math"
	"slices"
	"strings"
	"time"
)

// assets are the templates, stylesheet and script, embedded in the binary.
//
//go:embed templates/*.html static/*
var assets embed.FS

// view is what every page template gets.
type view struct {
	Title    string
	Nav      string // the menu entry to highlight
	Node     string // the coordinator serving the console
	Operator string
	CSRF     string
	Flash    string
	Data     any
}

// pages holds one parsed template set per page (the layout and the page).
type pages struct {
	sets map[string]*template.Template
}

var funcs = template.FuncMap{
	"ts": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		d := time.Since(t).Round(time.Second)
		if d < 0 {
			d = 0
		}
		return d.String() + " ago"
	},
	"dur":        func(d time.Duration) string { return fmtDur(d) },
	"span":       func(a, b time.Time) string { return span(a, b) },
	"bytes":      fmtBytes,
	"num":        fmtNum,
	"pct":        func(v float64) string { return fmt.Sprintf("%.2f%%", v) },
	"frac":       func(v float64) string { return fmt.Sprintf("%.2f%%", 100*v) },
	"short":      func(h string) string { return h[:min(12, len(h))] },
	"labels":     fmtLabels,
	"join":       strings.Join,
	"sorted":     func(m map[string]float64) []string { return slices.Sorted(maps.Keys(m)) },
	"add":        func(a, b int) int { return a + b },
	"int64":      func(n int) int64 { return int64(n) },
	"capitalize": capitalize,
	"div": func(a, b float64) float64 {
		if b == 0 {
			return 0
		}
		return a / b
	},
}

func newPages() (*pages, error) {
	names, err := fs.Glob(assets, "templates/*.html")
	if err != nil {
		return nil, err
	}
	p := &pages{sets: map[string]*template.Template{}}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if base == "layout" {
			continue
		}
		t, err := template.New(base).Funcs(funcs).ParseFS(assets, "templates/layout.html", n)
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", n, err)
		}
		p.sets[base] = t
	}
	return p, nil
}

// render writes page name in the layout. It renders into memory first,
// so a template error never leaves half a page.
func (p *pages) render(w io.Writer, name string, v view) error {
	return p.exec(w, name, "layout", v)
}

// fragment writes the template "live" of page name alone.
func (p *pages) fragment(w io.Writer, name string, data any) error {
	return p.exec(w, name, "live", data)
}

func (p *pages) exec(w io.Writer, set, tmpl string, data any) error {
	t, ok := p.sets[set]
	if !ok {
		return fmt.Errorf("console: no page %q", set)
	}
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, tmpl, data); err != nil {
		return fmt.Errorf("console: page %s: %w", set, err)
	}
	_, err := w.Write(b.Bytes())
	return err
}

func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "—"
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(10 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// span is the time from a to b ("running" when b is zero).
func span(a, b time.Time) string {
	if b.IsZero() {
		return "running"
	}
	return fmtDur(b.Sub(a))
}

func fmtBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func fmtNum(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Sprint(v)
	}
	if v == math.Trunc(v) && math.Abs(v) < 1e12 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.4g", v)
}

func fmtLabels(m map[string]string) string {
	if len(m) == 0 {
		return "—"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ", ")
}
