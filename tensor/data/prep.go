package data

import (
	"encoding/json"
	"fmt"
	"math"

	"github.com/fedge/fedge/tensor"
)

// Phases of federated data preparation, in the order a job runs them.
// Each is one secure sum: every agent computes PrepVector on its own raw
// training data and the coordinator learns only the federation's total.
const (
	// PrepProfile sums, per rule, the present values' count, sum and sum
	// of squares and the missing cells (over rows no drop rule removes),
	// and the rows holding each candidate category.
	PrepProfile = 1
	// PrepHistogram sums, per rule that needs one (NeedsHistogram), the
	// histogram of its present values over PrepPlan.Ranges.
	PrepHistogram = 2
	// PrepApply applies the resolved columns and sums the CleanReport
	// (and, with Moments, each input value's count, sum and sum of
	// squares after cleaning, for standardization).
	PrepApply = 3
)

// PrepPlan is what one preparation phase asks of an agent; it travels as
// JSON (MarshalBinary) inside the round's request.
type PrepPlan struct {
	Phase int          `json:"phase"`
	Rules []ColumnRule `json:"rules,omitempty"` // PrepProfile, PrepHistogram
	// Ranges are the histogram ranges [lo, hi] of the rules that need one,
	// in rule order (PrepHistogram).
	Ranges [][2]float64 `json:"ranges,omitempty"`
	// Columns are the resolved input columns (PrepApply).
	Columns []tensor.InputColumn `json:"columns,omitempty"`
	Moments bool                 `json:"moments,omitempty"`
}

// maxPlanBytes bounds a plan's JSON.
const maxPlanBytes = 4 << 20

// MarshalBinary encodes the plan.
func (p *PrepPlan) MarshalBinary() ([]byte, error) { return json.Marshal(p) }

// UnmarshalBinary decodes and checks a plan.
func (p *PrepPlan) UnmarshalBinary(b []byte) error {
	if len(b) > maxPlanBytes {
		return fmt.Errorf("data.PrepPlan: %d bytes: %w", len(b), ErrLimit)
	}
	var q PrepPlan
	if err := json.Unmarshal(b, &q); err != nil {
		return fmt.Errorf("data.PrepPlan: %v: %w", err, ErrFormat)
	}
	if err := q.check(); err != nil {
		return fmt.Errorf("data.PrepPlan: %w", err)
	}
	*p = q
	return nil
}

func (p *PrepPlan) check() error {
	switch p.Phase {
	case PrepProfile, PrepHistogram:
		if err := ValidateRules(p.Rules); err != nil {
			return err
		}
		if p.Phase == PrepHistogram {
			n := 0
			for i := range p.Rules {
				if p.Rules[i].NeedsHistogram() {
					n++
				}
			}
			if len(p.Ranges) != n {
				return fmt.Errorf("%d ranges for %d histograms: %w", len(p.Ranges), n, ErrFormat)
			}
			for _, r := range p.Ranges {
				if !(r[0] < r[1]) || math.IsInf(r[0], 0) || math.IsInf(r[1], 0) {
					return fmt.Errorf("histogram range %v: %w", r, ErrFormat)
				}
			}
		}
	case PrepApply:
		if len(p.Columns) == 0 {
			return fmt.Errorf("no columns: %w", ErrFormat)
		}
		w := tensor.ColumnsWidth(p.Columns)
		if err := (tensor.Spec{Input: []int{w}, Layers: []tensor.LayerSpec{{Type: tensor.LayerDense, Units: 1}}, Columns: p.Columns}).Validate(); err != nil {
			return err
		}
	default:
		return fmt.Errorf("phase %d: %w", p.Phase, ErrFormat)
	}
	return nil
}

// Len returns the length of the phase's vector.
func (p *PrepPlan) Len() int {
	switch p.Phase {
	case PrepProfile:
		n := 2
		for _, r := range p.Rules {
			n += 4 + len(r.Candidates)
		}
		return n
	case PrepHistogram:
		n := 0
		for i := range p.Rules {
			if p.Rules[i].NeedsHistogram() {
				n += p.Rules[i].BinCount() + 2
			}
		}
		return n
	case PrepApply:
		n := 6
		if p.Moments {
			n += 3 * tensor.ColumnsWidth(p.Columns)
		}
		return n
	}
	return 0
}

// rulePolicy looks a column's missing policy up in rules.
func rulePolicy(rules []ColumnRule) func(string) (string, bool) {
	return func(name string) (string, bool) {
		for i := range rules {
			if rules[i].Name == name {
				return rules[i].Missing, true
			}
		}
		return "", false
	}
}

// PrepVector computes an agent's vector for the phase p from the rows of
// t (every row if rows is nil), laid out as Len says: the sum of every
// agent's vector is the federation's. Data the rules cannot use (a
// missing cell of a reject column, text in a numeric column, a column the
// table lacks) is an error naming its line and column.
func PrepVector(t *RawTable, rows []int, p *PrepPlan) ([]float64, error) {
	v, err := prepVector(t, rows, p)
	if err != nil {
		return nil, fmt.Errorf("data.PrepVector: %w", err)
	}
	return v, nil
}

func prepVector(t *RawTable, rows []int, p *PrepPlan) ([]float64, error) {
	if err := p.check(); err != nil {
		return nil, err
	}
	if p.Phase == PrepApply {
		var st *Stats
		if p.Moments {
			st = NewStats(tensor.ColumnsWidth(p.Columns))
		}
		_, rep, err := cleanTable(t, rows, p.Columns, st)
		if err != nil {
			return nil, err
		}
		v := []float64{float64(rep.Rows), float64(rep.Kept), float64(rep.Dropped), float64(rep.Filled), float64(rep.Clipped), float64(rep.Unknown)}
		if st != nil {
			v = append(v, st.Vector()...)
		}
		return v, nil
	}
	cols := make([]*RawColumn, len(p.Rules))
	for j := range p.Rules {
		var err error
		if p.Rules[j].Categorical() {
			if cols[j] = t.Column(p.Rules[j].Name); cols[j] == nil {
				return nil, fmt.Errorf("no column %q in the data: %w", p.Rules[j].Name, ErrMismatch)
			}
		} else if cols[j], err = numericColumn(t, p.Rules[j].Name); err != nil {
			return nil, err
		}
	}
	total := t.Rows()
	if rows != nil {
		total = len(rows)
	}
	kept, err := keptRows(t, rows, rulePolicy(p.Rules))
	if err != nil {
		return nil, err
	}
	v := make([]float64, 0, p.Len())
	vals := make([]float32, len(kept))
	if p.Phase == PrepProfile {
		v = append(v, float64(total), float64(len(kept)))
		var cands []float64
		for j, r := range p.Rules {
			c := cols[j]
			var n, s, ss, miss float64
			if r.Categorical() {
				ic := tensor.InputColumn{Categories: r.Candidates}
				var nums []float64
				if c.Text == nil {
					nums = categoryNumbers(r.Candidates)
				}
				counts := make([]float64, len(r.Candidates))
				for _, i := range kept {
					if c.missingAt(i) {
						miss++
					} else if k := categoryOf(c, i, &ic, nums); k >= 0 {
						counts[k]++
					}
				}
				cands = append(cands, counts...)
			} else {
				for _, i := range kept {
					x := c.Values[i]
					if x != x {
						miss++
						continue
					}
					n, s, ss = n+1, s+float64(x), ss+float64(x)*float64(x)
				}
			}
			v = append(v, n, s, ss, miss)
		}
		return append(v, cands...), nil
	}
	h := 0
	for j := range p.Rules {
		r := &p.Rules[j]
		if !r.NeedsHistogram() {
			continue
		}
		for k, i := range kept {
			vals[k] = cols[j].Values[i]
		}
		counts := make([]float64, r.BinCount()+2)
		Histogram(counts, p.Ranges[h][0], p.Ranges[h][1], vals)
		v = append(v, counts...)
		h++
	}
	return v, nil
}

// Profile is the decoded sum of a PrepProfile phase.
type Profile struct {
	Rows, Kept float64
	// Count, Sum, SumSq and Missing are per rule (zero moments for a
	// categorical rule); Candidates holds each rule's candidate counts.
	Count, Sum, SumSq, Missing []float64
	Candidates                 [][]float64
}

// ParseProfile splits a PrepProfile sum of the rules' plan.
func ParseProfile(rules []ColumnRule, v []float64) (*Profile, error) {
	p := &PrepPlan{Phase: PrepProfile, Rules: rules}
	if len(v) != p.Len() {
		return nil, fmt.Errorf("data.ParseProfile: %d values for %d: %w", len(v), p.Len(), ErrMismatch)
	}
	pr := &Profile{Rows: v[0], Kept: v[1]}
	off := 2
	for range rules {
		pr.Count = append(pr.Count, v[off])
		pr.Sum = append(pr.Sum, v[off+1])
		pr.SumSq = append(pr.SumSq, v[off+2])
		pr.Missing = append(pr.Missing, v[off+3])
		off += 4
	}
	for _, r := range rules {
		pr.Candidates = append(pr.Candidates, v[off:off+len(r.Candidates)])
		off += len(r.Candidates)
	}
	return pr, nil
}

// Mean returns rule j's mean, and whether it has any value.
func (p *Profile) Mean(j int) (float64, bool) {
	if p.Count[j] <= 0 {
		return 0, false
	}
	return p.Sum[j] / p.Count[j], true
}

// Std returns rule j's population standard deviation.
func (p *Profile) Std(j int) float64 {
	m, ok := p.Mean(j)
	if !ok {
		return 0
	}
	return math.Sqrt(math.Max(0, p.SumSq[j]/p.Count[j]-m*m))
}

// HistogramRange returns the range rule j's histogram spans: its Range,
// else the profile's mean ± DefaultRangeSigmas·σ (widened to ±1 around the
// mean when σ is 0).
func (p *Profile) HistogramRange(rules []ColumnRule, j int) [2]float64 {
	if r := rules[j].Range; r != nil {
		return [2]float64{r[0], r[1]}
	}
	m, _ := p.Mean(j)
	d := DefaultRangeSigmas * p.Std(j)
	if !(d > 0) {
		d = 1
	}
	return [2]float64{m - d, m + d}
}

// Resolve turns rules into a model's input columns from the federation's
// profile and histograms (the PrepHistogram sum, nil if no rule needs
// one): mean fills from the profile, median fills and clip bounds from
// the histograms (to one bin), candidate categories kept by their counts.
// A fill or bound asked of a column without any value is an error.
func Resolve(rules []ColumnRule, prof *Profile, ranges [][2]float64, hist []float64) ([]tensor.InputColumn, error) {
	cols := make([]tensor.InputColumn, len(rules))
	h, off := 0, 0
	for j, r := range rules {
		c := tensor.InputColumn{Name: r.Name, Missing: r.Missing, Other: r.Unknown == UnknownOther}
		if c.Missing == "" {
			c.Missing = tensor.ColumnReject
		}
		switch {
		case len(r.Categories) > 0:
			c.Categories = append([]string(nil), r.Categories...)
		case len(r.Candidates) > 0:
			minCount := float64(max(r.MinCount, 1))
			for k, name := range r.Candidates {
				if prof.Candidates[j][k] >= minCount {
					c.Categories = append(c.Categories, name)
				}
			}
			if len(c.Categories) == 0 {
				return nil, fmt.Errorf("data.Resolve: column %q: no candidate category is held by %v rows: %w", r.Name, minCount, ErrMissingValue)
			}
		}
		var counts []float64
		var rg [2]float64
		if r.NeedsHistogram() {
			if h >= len(ranges) {
				return nil, fmt.Errorf("data.Resolve: %d histogram ranges: %w", len(ranges), ErrMismatch)
			}
			n := r.BinCount() + 2
			if off+n > len(hist) {
				return nil, fmt.Errorf("data.Resolve: histogram sum of %d values: %w", len(hist), ErrMismatch)
			}
			counts, rg = hist[off:off+n], ranges[h]
			off += n
			h++
		}
		switch r.Missing {
		case tensor.ColumnMean:
			m, ok := prof.Mean(j)
			if !ok {
				return nil, fmt.Errorf("data.Resolve: column %q has no value to take a mean of: %w", r.Name, ErrMissingValue)
			}
			c.Fill = float32(m)
		case tensor.ColumnMedian:
			q := HistogramQuantile(counts, rg[0], rg[1], 0.5)
			if q != q {
				return nil, fmt.Errorf("data.Resolve: column %q has no value to take a median of: %w", r.Name, ErrMissingValue)
			}
			c.Fill = float32(q)
		case tensor.ColumnConstant:
			c.Fill = float32(*r.Fill)
		}
		if r.Clip != nil {
			lo, hi := HistogramQuantile(counts, rg[0], rg[1], r.Clip[0]), HistogramQuantile(counts, rg[0], rg[1], r.Clip[1])
			if lo != lo || hi != hi {
				return nil, fmt.Errorf("data.Resolve: column %q has no value to clip at: %w", r.Name, ErrMissingValue)
			}
			l32, h32 := float32(lo), float32(hi)
			c.Lo, c.Hi = &l32, &h32
		}
		cols[j] = c
	}
	return cols, nil
}

// Quality is the decoded CleanReport sum of a PrepApply phase, and the
// moments of the cleaned inputs when the plan asked for them.
type Quality struct {
	Report  CleanReport
	Moments *Stats
}

// ParseQuality splits a PrepApply sum of plan p.
func ParseQuality(p *PrepPlan, v []float64) (*Quality, error) {
	if len(v) != p.Len() {
		return nil, fmt.Errorf("data.ParseQuality: %d values for %d: %w", len(v), p.Len(), ErrMismatch)
	}
	i := func(k int) int { return int(math.Round(v[k])) }
	q := &Quality{Report: CleanReport{Rows: i(0), Kept: i(1), Dropped: i(2), Filled: i(3), Clipped: i(4), Unknown: i(5)}}
	if p.Moments {
		st, err := StatsFromVector(v[6:])
		if err != nil {
			return nil, fmt.Errorf("data.ParseQuality: %w", err)
		}
		q.Moments = st
	}
	return q, nil
}
