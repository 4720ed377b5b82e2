package data

import (
	"fmt"
	"math"

	"github.com/fedge/fedge/tensor"
)

// Stats are per-feature sufficient statistics of a dataset: the count, sum
// and sum of squares of each feature's values (NaN values are skipped), and
// optionally the minimum and maximum.
//
// Count, Sum and SumSq are additive, so a federation can compute them
// without any client revealing its own: each client exports Vector(), the
// secure aggregation sums the vectors, and StatsFromVector rebuilds the
// global Stats from which a Standardizer follows. Min and Max are not sums;
// a sum-only aggregation cannot produce them, so Stats rebuilt from a vector
// carry none (HasBounds is false). A federated min-max scaling must then use
// bounds agreed in advance (the data's schema: pixels in [0,1], a sensor's
// range) via NewMinMaxScalerBounds, or bounds derived from the summed moments
// (MomentBounds: mean ± k·std, with clipping); a secure maximum protocol is
// not part of fedge. Add merges Min and Max exactly when both sides have
// them, which is right for a trusted, plaintext merge only.
type Stats struct {
	Count, Sum, SumSq []float64 // per feature
	Min, Max          []float64 // per feature; nil when unknown
}

// Features returns the number of features the Stats describe.
func (s *Stats) Features() int { return len(s.Count) }

// HasBounds reports whether Min and Max are known.
func (s *Stats) HasBounds() bool { return s.Min != nil && s.Max != nil }

// NewStats returns empty Stats of f features, with bounds (Min +Inf, Max
// -Inf) ready for Update.
func NewStats(f int) *Stats {
	s := &Stats{
		Count: make([]float64, f), Sum: make([]float64, f), SumSq: make([]float64, f),
		Min: make([]float64, f), Max: make([]float64, f),
	}
	for i := range f {
		s.Min[i], s.Max[i] = math.Inf(1), math.Inf(-1)
	}
	return s
}

// ComputeStats returns the Stats of every feature of ds, with bounds.
func ComputeStats(ds *tensor.Dataset) *Stats {
	f := max(ds.Features(), 0)
	s := NewStats(f)
	if f == 0 {
		return s
	}
	for off := 0; off+f <= len(ds.X); off += f {
		s.Update(ds.X[off : off+f])
	}
	return s
}

// Update adds one example (a row of Features() values) to the Stats.
// NaN values are skipped. It panics if len(row) != Features().
func (s *Stats) Update(row []float32) {
	if len(row) != len(s.Count) {
		panic(fmt.Sprintf("data.Stats.Update: row of %d values for %d features", len(row), len(s.Count)))
	}
	bounds := s.HasBounds()
	for j, v32 := range row {
		if v32 != v32 {
			continue
		}
		v := float64(v32)
		s.Count[j]++
		s.Sum[j] += v
		s.SumSq[j] += v * v
		if bounds {
			s.Min[j] = math.Min(s.Min[j], v)
			s.Max[j] = math.Max(s.Max[j], v)
		}
	}
}

// Add adds other's counts and sums into s. Bounds merge (min of minima, max
// of maxima) when both have them; otherwise s loses its bounds.
func (s *Stats) Add(other *Stats) error {
	if other.Features() != s.Features() {
		return fmt.Errorf("data.Stats.Add: %d features to %d: %w", other.Features(), s.Features(), ErrMismatch)
	}
	for j := range s.Count {
		s.Count[j] += other.Count[j]
		s.Sum[j] += other.Sum[j]
		s.SumSq[j] += other.SumSq[j]
	}
	if s.HasBounds() && other.HasBounds() {
		for j := range s.Min {
			s.Min[j] = math.Min(s.Min[j], other.Min[j])
			s.Max[j] = math.Max(s.Max[j], other.Max[j])
		}
	} else {
		s.Min, s.Max = nil, nil
	}
	return nil
}

// Vector returns the additive part of s as one flat vector of 3·Features()
// values: all counts, then all sums, then all sums of squares. The sum of
// clients' vectors is the vector of the union of their data.
func (s *Stats) Vector() []float64 {
	v := make([]float64, 0, 3*len(s.Count))
	v = append(v, s.Count...)
	v = append(v, s.Sum...)
	return append(v, s.SumSq...)
}

// Vector32 is Vector in float32, the element type of fedge's aggregation.
// float32 carries 24 bits: counts stay exact below 16,777,216 examples, and
// sums keep about 7 significant digits.
func (s *Stats) Vector32() []float32 {
	v := make([]float32, 3*len(s.Count))
	for i, x := range s.Vector() {
		v[i] = float32(x)
	}
	return v
}

// StatsFromVector rebuilds Stats (without bounds) from a vector laid out as
// Vector returns it, e.g. a securely aggregated sum. Its length must be a
// multiple of 3 and its values finite with non-negative counts.
func StatsFromVector(v []float64) (*Stats, error) {
	if len(v)%3 != 0 || len(v) == 0 {
		return nil, fmt.Errorf("data.StatsFromVector: length %d is not a positive multiple of 3: %w", len(v), ErrFormat)
	}
	f := len(v) / 3
	for i, x := range v {
		if math.IsNaN(x) || math.IsInf(x, 0) || (i < f && x < 0) {
			return nil, fmt.Errorf("data.StatsFromVector: element %d is %v: %w", i, x, ErrFormat)
		}
	}
	c := append([]float64(nil), v...)
	return &Stats{Count: c[:f:f], Sum: c[f : 2*f : 2*f], SumSq: c[2*f:]}, nil
}

// StatsFromVector32 is StatsFromVector for a float32 vector.
func StatsFromVector32(v []float32) (*Stats, error) {
	w := make([]float64, len(v))
	for i, x := range v {
		w[i] = float64(x)
	}
	return StatsFromVector(w)
}

// Mean returns feature j's mean, or 0 if it has no values.
func (s *Stats) Mean(j int) float64 {
	if s.Count[j] <= 0 {
		return 0
	}
	return s.Sum[j] / s.Count[j]
}

// Var returns feature j's population variance (clamped at 0 against
// rounding), or 0 if it has no values.
func (s *Stats) Var(j int) float64 {
	if s.Count[j] <= 0 {
		return 0
	}
	m := s.Sum[j] / s.Count[j]
	return math.Max(0, s.SumSq[j]/s.Count[j]-m*m)
}
