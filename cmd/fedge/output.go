package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// writeJSON prints v as indented JSON; a nil slice prints as [] so that
// scripts always get a list from list verbs.
func writeJSON(w io.Writer, v any) error {
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Slice && rv.IsNil() {
		_, err := io.WriteString(w, "[]\n")
		return err
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table writes aligned columns; call flush when done.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	if len(header) > 0 {
		t.row(toAny(header)...)
	}
	return t
}

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

func (t *table) row(cells ...any) {
	parts := make([]string, len(cells))
	for i, c := range cells {
		parts[i] = fmt.Sprint(c)
	}
	fmt.Fprintln(t.tw, strings.Join(parts, "\t"))
}

func (t *table) flush() error { return t.tw.Flush() }

// kv writes "Key: value" lines with aligned values.
func kv(w io.Writer, pairs ...any) error {
	t := newTable(w)
	for i := 0; i+1 < len(pairs); i += 2 {
		t.row(fmt.Sprint(pairs[i])+":", pairs[i+1])
	}
	return t.flush()
}

// labelString writes labels as k=v,k=v in key order ("-" if none).
func labelString(m map[string]string) string {
	if len(m) == 0 {
		return "-"
	}
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ",")
}

// metricString writes metrics as k=v in key order, values rounded.
func metricString(m map[string]float64) string {
	if len(m) == 0 {
		return "-"
	}
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(keys))
	for i, k := range keys {
		if strings.HasSuffix(k, "accuracy") {
			// Accuracy reads as a percentage everywhere in the CLI.
			parts[i] = fmt.Sprintf("%s=%.2f%%", k, 100*m[k])
			continue
		}
		parts[i] = fmt.Sprintf("%s=%.4g", k, m[k])
	}
	return strings.Join(parts, " ")
}

// version writes a model version ("-" for none).
func version(v uint64) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf("v%d", v)
}

// when writes a timestamp in UTC to the second ("-" for the zero time).
func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

// ago writes how long ago t was, coarsely ("-" for the zero time).
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

// bytesString writes a byte count with a binary unit.
func bytesString(n int64) string {
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

// percent writes a fraction in [0,1] as a percentage ("91.2%").
func percent(f float64) string {
	return fmt.Sprintf("%.1f%%", 100*f)
}

// thousands writes n with commas between groups of three digits.
func thousands(n int) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return "-" + thousands(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// yes writes a boolean as "yes" or "-".
func yes(b bool) string {
	if b {
		return "yes"
	}
	return "-"
}

// parseLabels parses k=v pairs, given as one comma-separated string or as
// separate arguments.
func parseLabels(items ...string) (map[string]string, error) {
	m := map[string]string{}
	for _, item := range items {
		for _, kvs := range strings.Split(item, ",") {
			if kvs = strings.TrimSpace(kvs); kvs == "" {
				continue
			}
			k, v, ok := strings.Cut(kvs, "=")
			if !ok || k == "" {
				return nil, usagef("label %q: want key=value", kvs)
			}
			m[k] = v
		}
	}
	return m, nil
}
