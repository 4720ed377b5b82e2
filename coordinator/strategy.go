package coordinator

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"
)

// ErrStrategy is returned when a strategy cannot aggregate its input.
var ErrStrategy = errors.New("coordinator: strategy")

// Update is one client's contribution in the clear: the change it made to
// the round's starting weights and how many examples it trained on. Only
// the robust strategies (median, trimmed mean, Krum) see these, and only
// when secure aggregation is off.
type Update struct {
	Delta    []float32
	Examples float64
}

// Strategy turns a round's aggregate into the next global model. Apply
// takes the example-weighted mean of the clients' deltas (all that secure
// aggregation reveals) and updates w in place. Strategies with memory
// (momentum, adaptive moments) keep it in the receiver; State/SetState
// carry it across leader changes.
type Strategy interface {
	Name() string
	Apply(w, meanDelta []float32) error
	State() []byte
	SetState(b []byte) error
}

// RobustStrategy additionally aggregates individual updates; it is usable
// only when secure aggregation is off.
type RobustStrategy interface {
	Strategy
	// Aggregate combines the updates into the delta to apply.
	Aggregate(updates []Update) ([]float32, error)
}

// NewStrategy builds the server strategy a job names. spec must have been
// normalized.
func NewStrategy(spec StrategySpec) (Strategy, error) {
	lr := spec.ServerLR
	b1, b2, tau := spec.Beta1, spec.Beta2, spec.Tau
	if b1 == 0 {
		b1 = 0.9
	}
	if b2 == 0 {
		b2 = 0.99
	}
	if tau == 0 {
		tau = 1e-3
	}
	switch spec.Name {
	case "fedavg", "fedprox", "":
		if lr == 0 {
			lr = 1
		}
		return &fedAvgM{name: nameOr(spec.Name, "fedavg"), lr: lr}, nil
	case "fedavgm":
		if lr == 0 {
			lr = 1
		}
		m := spec.Momentum
		if m == 0 {
			m = 0.9
		}
		return &fedAvgM{name: "fedavgm", lr: lr, momentum: m}, nil
	case "fedadam", "fedyogi", "fedadagrad":
		if lr == 0 {
			lr = 0.01
		}
		return &fedOpt{name: spec.Name, lr: lr, b1: b1, b2: b2, tau: tau}, nil
	case "median":
		return &robust{fedAvgM: fedAvgM{name: "median", lr: 1}, agg: coordinateMedian}, nil
	case "trimmedmean":
		trim := spec.Trim
		if trim == 0 {
			trim = 0.1
		}
		if trim < 0 || trim >= 0.5 {
			return nil, fmt.Errorf("%w: trim %v outside [0,0.5)", ErrStrategy, trim)
		}
		return &robust{fedAvgM: fedAvgM{name: "trimmedmean", lr: 1}, agg: func(u []Update) ([]float32, error) { return trimmedMean(u, trim) }}, nil
	case "krum":
		f := spec.Byzant
		if f == 0 {
			f = 1
		}
		return &robust{fedAvgM: fedAvgM{name: "krum", lr: 1}, agg: func(u []Update) ([]float32, error) { return krum(u, f) }}, nil
	}
	return nil, fmt.Errorf("%w: unknown strategy %q", ErrStrategy, spec.Name)
}

func nameOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// fedAvgM is FedAvg (momentum 0) and FedAvgM (Hsu et al. 2019):
// v ← βv + Δ; w ← w + η·v.
type fedAvgM struct {
	name         string
	lr, momentum float64
	v            []float32
}

func (s *fedAvgM) Name() string { return s.name }

func (s *fedAvgM) Apply(w, d []float32) error {
	if len(w) != len(d) {
		return fmt.Errorf("%w: %d weights, %d-long delta", ErrStrategy, len(w), len(d))
	}
	if s.momentum == 0 {
		lr := float32(s.lr)
		for i := range w {
			w[i] += lr * d[i]
		}
		return nil
	}
	if len(s.v) != len(w) {
		s.v = make([]float32, len(w))
	}
	lr, m := float32(s.lr), float32(s.momentum)
	for i := range w {
		s.v[i] = m*s.v[i] + d[i]
		w[i] += lr * s.v[i]
	}
	return nil
}

func (s *fedAvgM) State() []byte { return encodeVectors(s.v) }

func (s *fedAvgM) SetState(b []byte) error {
	vs, err := decodeVectors(b, 1)
	if err != nil {
		return err
	}
	s.v = vs[0]
	return nil
}

// fedOpt is FedAdam, FedYogi and FedAdagrad (Reddi et al. 2021, "Adaptive
// Federated Optimization", Algorithm 2).
type fedOpt struct {
	name            string
	lr, b1, b2, tau float64
	m, v            []float32
}

func (s *fedOpt) Name() string { return s.name }

func (s *fedOpt) Apply(w, d []float32) error {
	if len(w) != len(d) {
		return fmt.Errorf("%w: %d weights, %d-long delta", ErrStrategy, len(w), len(d))
	}
	if len(s.m) != len(w) {
		s.m, s.v = make([]float32, len(w)), make([]float32, len(w))
		// v0 = τ² as in the paper, so the first steps are bounded.
		for i := range s.v {
			s.v[i] = float32(s.tau * s.tau)
		}
	}
	b1, b2, lr, tau := float32(s.b1), float32(s.b2), float32(s.lr), float32(s.tau)
	for i := range w {
		g := d[i]
		s.m[i] = b1*s.m[i] + (1-b1)*g
		g2 := g * g
		switch s.name {
		case "fedadagrad":
			s.v[i] += g2
		case "fedyogi":
			diff := s.v[i] - g2
			sign := float32(0)
			if diff > 0 {
				sign = 1
			} else if diff < 0 {
				sign = -1
			}
			s.v[i] -= (1 - b2) * g2 * sign
		default: // fedadam
			s.v[i] = b2*s.v[i] + (1-b2)*g2
		}
		w[i] += lr * s.m[i] / (float32(math.Sqrt(float64(s.v[i]))) + tau)
	}
	return nil
}

func (s *fedOpt) State() []byte { return encodeVectors(s.m, s.v) }

func (s *fedOpt) SetState(b []byte) error {
	vs, err := decodeVectors(b, 2)
	if err != nil {
		return err
	}
	s.m, s.v = vs[0], vs[1]
	return nil
}

// robust applies the delta a robust aggregator picks (step size 1).
type robust struct {
	fedAvgM
	agg func([]Update) ([]float32, error)
}

func (s *robust) Aggregate(u []Update) ([]float32, error) {
	if len(u) == 0 {
		return nil, fmt.Errorf("%w: no updates", ErrStrategy)
	}
	n := len(u[0].Delta)
	for _, x := range u {
		if len(x.Delta) != n {
			return nil, fmt.Errorf("%w: updates of different lengths", ErrStrategy)
		}
	}
	return s.agg(u)
}

// coordinateMedian is the coordinate-wise median (Yin et al. 2018).
func coordinateMedian(u []Update) ([]float32, error) {
	n := len(u[0].Delta)
	out := make([]float32, n)
	col := make([]float32, len(u))
	for i := 0; i < n; i++ {
		for j := range u {
			col[j] = u[j].Delta[i]
		}
		sort.Slice(col, func(a, b int) bool { return col[a] < col[b] })
		k := len(col)
		if k%2 == 1 {
			out[i] = col[k/2]
		} else {
			out[i] = (col[k/2-1] + col[k/2]) / 2
		}
	}
	return out, nil
}

// trimmedMean drops the trim fraction of largest and smallest values of
// each coordinate and averages the rest (Yin et al. 2018).
func trimmedMean(u []Update, trim float64) ([]float32, error) {
	k := len(u)
	cut := int(math.Floor(trim * float64(k)))
	if k-2*cut < 1 {
		return nil, fmt.Errorf("%w: trimming %d of %d updates at each end leaves none", ErrStrategy, cut, k)
	}
	n := len(u[0].Delta)
	out := make([]float32, n)
	col := make([]float32, k)
	for i := 0; i < n; i++ {
		for j := range u {
			col[j] = u[j].Delta[i]
		}
		sort.Slice(col, func(a, b int) bool { return col[a] < col[b] })
		var s float64
		for _, v := range col[cut : k-cut] {
			s += float64(v)
		}
		out[i] = float32(s / float64(k-2*cut))
	}
	return out, nil
}

// krum picks the update whose summed squared distance to its n−f−2 nearest
// neighbours is smallest (Blanchard et al. 2017).
func krum(u []Update, f int) ([]float32, error) {
	n := len(u)
	m := n - f - 2
	if m < 1 {
		return nil, fmt.Errorf("%w: krum needs n > f+2 (n=%d, f=%d)", ErrStrategy, n, f)
	}
	dist := make([][]float64, n)
	for i := range dist {
		dist[i] = make([]float64, n)
	}
	for i := 0; i < n; i++ {
		for j := i + 1; j < n; j++ {
			var s float64
			a, b := u[i].Delta, u[j].Delta
			for k := range a {
				d := float64(a[k] - b[k])
				s += d * d
			}
			dist[i][j], dist[j][i] = s, s
		}
	}
	best, bestScore := -1, math.Inf(1)
	row := make([]float64, 0, n)
	for i := 0; i < n; i++ {
		row = row[:0]
		for j := 0; j < n; j++ {
			if j != i {
				row = append(row, dist[i][j])
			}
		}
		sort.Float64s(row)
		var s float64
		for _, d := range row[:m] {
			s += d
		}
		if s < bestScore {
			best, bestScore = i, s
		}
	}
	return append([]float32(nil), u[best].Delta...), nil
}

// encodeVectors lays out float32 vectors as count, then per vector a length
// and little-endian values.
func encodeVectors(vs ...[]float32) []byte {
	size := 4
	for _, v := range vs {
		size += 4 + 4*len(v)
	}
	b := make([]byte, 0, size)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(vs)))
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
		for _, x := range v {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
		}
	}
	return b
}

func decodeVectors(b []byte, want int) ([][]float32, error) {
	if len(b) == 0 {
		return make([][]float32, want), nil
	}
	bad := fmt.Errorf("%w: malformed strategy state", ErrStrategy)
	if len(b) < 4 || int(binary.LittleEndian.Uint32(b)) != want {
		return nil, bad
	}
	b = b[4:]
	out := make([][]float32, want)
	for i := range out {
		if len(b) < 4 {
			return nil, bad
		}
		n := int(binary.LittleEndian.Uint32(b))
		b = b[4:]
		if n < 0 || n > len(b)/4 {
			return nil, bad
		}
		v := make([]float32, n)
		for j := range v {
			v[j] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*j:]))
		}
		out[i] = v
		b = b[4*n:]
	}
	if len(b) != 0 {
		return nil, bad
	}
	return out, nil
}
