package data

import (
	"fmt"
	"math"

	"github.com/fedge/fedge/tensor"
)

// relZeroStd is the standard deviation, relative to the mean's magnitude,
// below which a feature counts as constant. Computing the variance as
// E[x²] - mean² in float64 leaves an error near 1e-8·|mean| in the standard
// deviation; float32 data cannot resolve differences below about 1e-7·|mean|.
const relZeroStd = 1e-6

// Standardizer maps each feature to zero mean and unit variance:
// x' = (x - Mean)·InvStd. A constant feature (zero variance) gets InvStd 1,
// so it becomes x - Mean, which is 0 on the data the Stats came from.
type Standardizer struct {
	Mean, InvStd []float32
}

// NewStandardizer builds a Standardizer from Stats, local or summed across
// clients. A feature with no values at all keeps Mean 0 and InvStd 1.
func NewStandardizer(s *Stats) *Standardizer {
	f := s.Features()
	st := &Standardizer{Mean: make([]float32, f), InvStd: make([]float32, f)}
	for j := range f {
		m, sd := s.Mean(j), math.Sqrt(s.Var(j))
		st.Mean[j] = float32(m)
		if sd == 0 || sd <= relZeroStd*math.Abs(m) {
			st.InvStd[j] = 1
		} else {
			st.InvStd[j] = float32(1 / sd)
		}
	}
	return st
}

// Transform standardizes every example of ds in place.
func (st *Standardizer) Transform(ds *tensor.Dataset) error {
	if f := ds.Features(); f != len(st.Mean) || len(ds.X) != ds.Len()*f {
		return fmt.Errorf("data.Standardizer.Transform: dataset of %d features for %d: %w", f, len(st.Mean), ErrMismatch)
	}
	f := len(st.Mean)
	for i := 0; i < len(ds.X); i += f {
		st.TransformRow(ds.X[i : i+f])
	}
	return nil
}

// TransformRow standardizes one example in place (for inference inputs).
// It panics if len(row) differs from the number of features.
func (st *Standardizer) TransformRow(row []float32) {
	if len(row) != len(st.Mean) {
		panic(fmt.Sprintf("data.Standardizer.TransformRow: %d values for %d features", len(row), len(st.Mean)))
	}
	m, inv := st.Mean[:len(row)], st.InvStd[:len(row)]
	for j, v := range row {
		row[j] = (v - m[j]) * inv[j]
	}
}

// MinMaxScaler maps each feature's [Min, Max] to [0,1]: x' = (x - Min)·Inv,
// Inv = 1/(Max - Min). A constant feature (Max == Min) gets Inv 0 and maps
// to 0. With Clip, results are clamped to [0,1], which agreed or
// moment-derived bounds need since the data may exceed them.
type MinMaxScaler struct {
	Min, Inv []float32
	Clip     bool
}

// NewMinMaxScaler builds a MinMaxScaler from the bounds in s. Stats rebuilt
// from a summed vector have none: it then fails with ErrNoBounds (see the
// Stats documentation for the federated alternatives). A feature with no
// values maps to 0.
func NewMinMaxScaler(s *Stats) (*MinMaxScaler, error) {
	if !s.HasBounds() {
		return nil, fmt.Errorf("data.NewMinMaxScaler: %w", ErrNoBounds)
	}
	lo := make([]float32, s.Features())
	hi := make([]float32, s.Features())
	for j := range lo {
		if s.Count[j] > 0 {
			lo[j], hi[j] = float32(s.Min[j]), float32(s.Max[j])
		}
	}
	m, err := NewMinMaxScalerBounds(lo, hi)
	if err != nil {
		return nil, fmt.Errorf("data.NewMinMaxScaler: %w", err)
	}
	return m, nil
}

// NewMinMaxScalerBounds builds a clipping MinMaxScaler from bounds agreed in
// advance or derived from summed moments (MomentBounds); this is the
// federated form, since minima and maxima cannot be securely summed.
func NewMinMaxScalerBounds(lo, hi []float32) (*MinMaxScaler, error) {
	if len(lo) != len(hi) {
		return nil, fmt.Errorf("data.NewMinMaxScalerBounds: %d minima, %d maxima: %w", len(lo), len(hi), ErrMismatch)
	}
	m := &MinMaxScaler{Min: append([]float32(nil), lo...), Inv: make([]float32, len(lo)), Clip: true}
	for j := range lo {
		l, h := float64(lo[j]), float64(hi[j])
		if math.IsNaN(l) || math.IsNaN(h) || math.IsInf(l, 0) || math.IsInf(h, 0) || h < l {
			return nil, fmt.Errorf("data.NewMinMaxScalerBounds: feature %d bounds [%v, %v]: %w", j, l, h, ErrFormat)
		}
		if h > l {
			m.Inv[j] = float32(1 / (h - l))
		}
	}
	return m, nil
}

// MomentBounds derives per-feature bounds mean ± k·std from (possibly
// securely summed) Stats, for NewMinMaxScalerBounds. With k = 3 a Gaussian
// feature keeps 99.7% of its values inside; the rest are clipped.
func MomentBounds(s *Stats, k float64) (lo, hi []float32) {
	lo = make([]float32, s.Features())
	hi = make([]float32, s.Features())
	for j := range lo {
		m, sd := s.Mean(j), math.Sqrt(s.Var(j))
		lo[j], hi[j] = float32(m-k*sd), float32(m+k*sd)
	}
	return lo, hi
}

// Transform scales every example of ds in place.
func (m *MinMaxScaler) Transform(ds *tensor.Dataset) error {
	if f := ds.Features(); f != len(m.Min) || len(ds.X) != ds.Len()*f {
		return fmt.Errorf("data.MinMaxScaler.Transform: dataset of %d features for %d: %w", f, len(m.Min), ErrMismatch)
	}
	f := len(m.Min)
	for i := 0; i < len(ds.X); i += f {
		m.TransformRow(ds.X[i : i+f])
	}
	return nil
}

// TransformRow scales one example in place. It panics if len(row) differs
// from the number of features.
func (m *MinMaxScaler) TransformRow(row []float32) {
	if len(row) != len(m.Min) {
		panic(fmt.Sprintf("data.MinMaxScaler.TransformRow: %d values for %d features", len(row), len(m.Min)))
	}
	lo, inv := m.Min[:len(row)], m.Inv[:len(row)]
	for j, v := range row {
		x := (v - lo[j]) * inv[j]
		if m.Clip {
			x = min(max(x, 0), 1)
		}
		row[j] = x
	}
}
