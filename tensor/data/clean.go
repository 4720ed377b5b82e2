package data

import (
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/fedge/fedge/tensor"
)

// Defaults and bounds of a ColumnRule's histogram.
const (
	DefaultBins = 256
	MaxBins     = 4096
	// DefaultRangeSigmas is how many standard deviations on each side of
	// the federation's mean a histogram covers when its rule gives no
	// Range.
	DefaultRangeSigmas = 4
)

// Unknown-category handling of a categorical ColumnRule.
const (
	UnknownZero  = "zero"  // a value in no category gives an all-zero block (default)
	UnknownOther = "other" // it sets an extra "other" slot after the categories
)

// ColumnRule is a job's rule for one CSV column, as written in a job file.
// A job's rules, in order, are its model's input columns. Missing-value
// policies are tensor.ColumnReject (the default), ColumnDrop, ColumnMean,
// ColumnMedian and ColumnConstant (with Fill). A column with Categories
// or Candidates is categorical and one-hot encoded; it takes the reject
// or drop policy only.
type ColumnRule struct {
	Name    string   `json:"name"`
	Missing string   `json:"missing,omitempty"`
	Fill    *float64 `json:"fill,omitempty"`
	// Clip, if set, is a pair of quantiles [qlo, qhi] (0 ≤ qlo < qhi ≤ 1)
	// at which the column's values are clipped, e.g. [0.01, 0.99].
	Clip []float64 `json:"clip,omitempty"`
	// Range and Bins fix the histogram medians and quantiles are read
	// from: Bins equal bins over [Range[0], Range[1]] plus one bin below
	// and one above. Without Range it spans the federation's mean ± 4σ;
	// Bins defaults to DefaultBins. A quantile is exact to one bin width.
	Range []float64 `json:"range,omitempty"`
	Bins  int       `json:"bins,omitempty"`
	// Categories fixes a categorical column's categories; Candidates asks
	// the federation to count these values instead, keeping those at
	// least MinCount (default 1) rows hold, in the candidates' order.
	Categories []string `json:"categories,omitempty"`
	Candidates []string `json:"candidates,omitempty"`
	MinCount   int      `json:"min_count,omitempty"`
	// Unknown is UnknownZero (default) or UnknownOther.
	Unknown string `json:"unknown,omitempty"`
}

// Categorical reports whether the rule one-hot encodes its column.
func (r *ColumnRule) Categorical() bool { return len(r.Categories) > 0 || len(r.Candidates) > 0 }

// NeedsHistogram reports whether the rule needs a federated histogram:
// a median fill or quantile clipping.
func (r *ColumnRule) NeedsHistogram() bool {
	return !r.Categorical() && (r.Missing == tensor.ColumnMedian || len(r.Clip) > 0)
}

// BinCount returns Bins or its default.
func (r *ColumnRule) BinCount() int { return orDefault(r.Bins, DefaultBins) }

// ValidateRules checks a job's column rules, naming the first bad field.
func ValidateRules(rules []ColumnRule) error {
	names := map[string]bool{}
	for i, r := range rules {
		bad := func(format string, a ...any) error {
			return fmt.Errorf("data.ValidateRules: columns[%d] (%q): %s: %w", i, r.Name, fmt.Sprintf(format, a...), ErrFormat)
		}
		if r.Name == "" || names[r.Name] {
			return bad("name empty or repeated")
		}
		names[r.Name] = true
		switch r.Missing {
		case "", tensor.ColumnReject, tensor.ColumnDrop:
		case tensor.ColumnMean, tensor.ColumnMedian:
			if r.Categorical() {
				return bad("a categorical column takes missing reject or drop, not %s", r.Missing)
			}
		case tensor.ColumnConstant:
			if r.Categorical() {
				return bad("a categorical column takes missing reject or drop, not constant")
			}
			if r.Fill == nil || math.IsNaN(*r.Fill) || math.IsInf(*r.Fill, 0) || math.Abs(*r.Fill) > math.MaxFloat32 {
				return bad("missing constant needs a finite fill")
			}
		default:
			return bad("missing %q is not reject, drop, mean, median or constant", r.Missing)
		}
		if r.Fill != nil && r.Missing != tensor.ColumnConstant {
			return bad("fill applies to missing constant only")
		}
		if r.Clip != nil {
			if r.Categorical() {
				return bad("clip applies to numeric columns")
			}
			if len(r.Clip) != 2 || !(r.Clip[0] >= 0 && r.Clip[0] < r.Clip[1] && r.Clip[1] <= 1) {
				return bad("clip must be two quantiles 0 <= lo < hi <= 1, got %v", r.Clip)
			}
		}
		if r.Range != nil && (len(r.Range) != 2 || !(r.Range[0] < r.Range[1]) || math.IsInf(r.Range[0], 0) || math.IsInf(r.Range[1], 0)) {
			return bad("range must be [lo, hi] with lo < hi, got %v", r.Range)
		}
		if r.Bins < 0 || r.Bins > MaxBins {
			return bad("bins %d outside [1, %d]", r.Bins, MaxBins)
		}
		if (r.Range != nil || r.Bins != 0) && !r.NeedsHistogram() {
			return bad("range and bins apply to a median fill or clip only")
		}
		if len(r.Categories) > 0 && len(r.Candidates) > 0 {
			return bad("give categories or candidates, not both")
		}
		cats := append(slices.Clone(r.Categories), r.Candidates...)
		if len(cats) > tensor.MaxCategories {
			return bad("%d categories, more than %d", len(cats), tensor.MaxCategories)
		}
		seen := map[string]bool{}
		for _, c := range cats {
			if c == "" || seen[c] {
				return bad("category %q empty or repeated", c)
			}
			seen[c] = true
		}
		if r.MinCount < 0 || (r.MinCount > 0 && len(r.Candidates) == 0) {
			return bad("min_count applies to candidates and must be positive")
		}
		switch r.Unknown {
		case "", UnknownZero:
		case UnknownOther:
			if !r.Categorical() {
				return bad("unknown applies to categorical columns")
			}
		default:
			return bad("unknown %q is not zero or other", r.Unknown)
		}
	}
	return nil
}

// CleanReport counts what cleaning did to a table.
type CleanReport struct {
	Rows    int // rows read
	Kept    int // rows kept
	Dropped int // rows dropped (missing label, or a missing cell in a drop column)
	Filled  int // cells filled
	Clipped int // cells clipped
	Unknown int // categorical cells in none of the categories (set to the other slot or to zeros)
}

// keptRows returns the rows (of rows, or of every row if rows is nil)
// that neither miss their label nor a cell of a drop column, and fails,
// naming the line and column, on a missing cell of a reject column.
func keptRows(t *RawTable, rows []int, policy func(name string) (missing string, ok bool)) ([]int, error) {
	if rows == nil {
		rows = make([]int, t.Rows())
		for i := range rows {
			rows[i] = i
		}
	}
	type check struct {
		c    *RawColumn
		drop bool
	}
	var checks []check
	for j := range t.Columns {
		c := &t.Columns[j]
		m, ok := policy(c.Name)
		if !ok || c.Missing == 0 {
			continue
		}
		switch m {
		case "", tensor.ColumnReject:
			checks = append(checks, check{c, false})
		case tensor.ColumnDrop:
			checks = append(checks, check{c, true})
		}
	}
	kept := make([]int, 0, len(rows))
rowLoop:
	for _, i := range rows {
		if t.Labels[i] < 0 {
			continue
		}
		for _, ch := range checks {
			if ch.c.missingAt(i) {
				if !ch.drop {
					return nil, &LineError{Input: "csv", Line: t.Lines[i], Column: ch.c.Name,
						Err: fmt.Errorf("%w (the job's policy for this column is reject)", ErrMissingValue)}
				}
				continue rowLoop
			}
		}
		kept = append(kept, i)
	}
	return kept, nil
}

// numericColumn returns t's column name for numeric use, or an error
// naming the first cell that is not a number.
func numericColumn(t *RawTable, name string) (*RawColumn, error) {
	c := t.Column(name)
	if c == nil {
		return nil, fmt.Errorf("no column %q in the data: %w", name, ErrMismatch)
	}
	if i := c.firstText(); i >= 0 {
		return nil, &LineError{Input: "csv", Line: t.Lines[i], Column: name,
			Err: fmt.Errorf("not a number: %q (declare the column's categories to one-hot encode it): %w", clip(c.Text[i]), ErrFormat)}
	}
	return c, nil
}

// categoryOf returns the slot of row i's value in col, or -1.
func categoryOf(c *RawColumn, i int, col *tensor.InputColumn, nums []float64) int {
	if c.Text != nil {
		return col.Category(c.Text[i])
	}
	v := float64(c.Values[i])
	for k, x := range nums {
		if x == v {
			return k
		}
	}
	if col.Other {
		return len(col.Categories)
	}
	return -1
}

// categoryNumbers parses categories as numbers (NaN where one is not),
// to match a numeric column's values.
func categoryNumbers(cats []string) []float64 {
	out := make([]float64, len(cats))
	for k, s := range cats {
		out[k] = math.NaN()
		if f, err := strconv.ParseFloat(s, 32); err == nil {
			out[k] = float64(float32(f))
		}
	}
	return out
}

// CleanTable applies a model's input columns to the rows of t (every row
// if rows is nil), in this order: rows missing their label, or a cell of a
// drop column, are dropped; a missing cell of a reject column is an error
// with its line and column; missing numeric cells get the column's fill;
// numeric values are clipped; categorical values are one-hot encoded. The
// Dataset's width is tensor.ColumnsWidth(cols), its classes t's.
func CleanTable(t *RawTable, rows []int, cols []tensor.InputColumn) (*tensor.Dataset, CleanReport, error) {
	ds, rep, err := cleanTable(t, rows, cols, nil)
	if err != nil {
		return nil, rep, fmt.Errorf("data.CleanTable: %w", err)
	}
	return ds, rep, nil
}

// cleanTable is CleanTable; moments, if not nil, receives each cleaned
// example.
func cleanTable(t *RawTable, rows []int, cols []tensor.InputColumn, moments *Stats) (*tensor.Dataset, CleanReport, error) {
	var rep CleanReport
	byName := map[string]*tensor.InputColumn{}
	for i := range cols {
		byName[cols[i].Name] = &cols[i]
	}
	raws := make([]*RawColumn, len(cols))
	nums := make([][]float64, len(cols))
	for j := range cols {
		var err error
		if len(cols[j].Categories) > 0 {
			if raws[j] = t.Column(cols[j].Name); raws[j] == nil {
				return nil, rep, fmt.Errorf("no column %q in the data: %w", cols[j].Name, ErrMismatch)
			}
			if raws[j].Text == nil {
				nums[j] = categoryNumbers(cols[j].Categories)
			}
		} else if raws[j], err = numericColumn(t, cols[j].Name); err != nil {
			return nil, rep, err
		}
	}
	total := t.Rows()
	if rows != nil {
		total = len(rows)
	}
	kept, err := keptRows(t, rows, func(name string) (string, bool) {
		c, ok := byName[name]
		if !ok {
			return "", false
		}
		return c.Missing, true
	})
	if err != nil {
		return nil, rep, err
	}
	width := tensor.ColumnsWidth(cols)
	x := make([]float32, len(kept)*width)
	y := make([]int32, len(kept))
	for r, i := range kept {
		y[r] = t.Labels[i]
		row := x[r*width : (r+1)*width]
		off := 0
		for j := range cols {
			col, raw := &cols[j], raws[j]
			if len(col.Categories) > 0 {
				if raw.missingAt(i) {
					rep.Unknown++ // a fill policy on a categorical column (ValidateRules refuses it)
				} else {
					k := categoryOf(raw, i, col, nums[j])
					if k >= 0 {
						row[off+k] = 1
					}
					if k < 0 || k == len(col.Categories) {
						rep.Unknown++
					}
				}
				off += col.Width()
				continue
			}
			v := raw.Values[i]
			if v != v {
				v = col.Fill
				rep.Filled++
			}
			if c := col.Clip(v); c != v {
				v = c
				rep.Clipped++
			}
			row[off] = v
			off++
		}
		if moments != nil {
			moments.Update(row)
		}
	}
	rep.Rows, rep.Kept, rep.Dropped = total, len(kept), total-len(kept)
	return &tensor.Dataset{X: x, Y: y, Shape: []int{width}, Classes: len(t.Classes)}, rep, nil
}

// HistogramQuantile returns the q-quantile (0 ≤ q ≤ 1) of the values a
// histogram counts: counts holds one bin below lo, bins equal bins over
// [lo, hi], and one bin above hi. Within a bin values are taken as
// spread evenly, so the answer is exact to one bin width (hi−lo)/bins
// when the quantile lies inside [lo, hi]; a quantile in the outer bins is
// lo or hi. It returns NaN if the histogram is empty.
func HistogramQuantile(counts []float64, lo, hi, q float64) float64 {
	bins := len(counts) - 2
	var n float64
	for _, c := range counts {
		n += c
	}
	if bins < 1 || n <= 0 {
		return math.NaN()
	}
	target := q * n
	cum := counts[0]
	if target <= cum && cum > 0 {
		return lo
	}
	w := (hi - lo) / float64(bins)
	for b := 1; b <= bins; b++ {
		c := counts[b]
		if c > 0 && cum+c >= target {
			return lo + (float64(b-1)+(target-cum)/c)*w
		}
		cum += c
	}
	return hi
}

// Histogram adds each value of vals that is not NaN to counts (laid out
// as HistogramQuantile reads them).
func Histogram(counts []float64, lo, hi float64, vals []float32) {
	bins := len(counts) - 2
	w := (hi - lo) / float64(bins)
	for _, v32 := range vals {
		if v32 != v32 {
			continue
		}
		v := float64(v32)
		switch {
		case v < lo:
			counts[0]++
		case v >= hi:
			if v == hi {
				counts[bins]++
			} else {
				counts[bins+1]++
			}
		default:
			b := min(int((v-lo)/w), bins-1)
			counts[1+b]++
		}
	}
}
