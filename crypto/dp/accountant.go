package dp

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
)

const (
	// MaxOrders bounds the number of RDP orders an Accountant tracks, and so
	// the size of its encoding.
	MaxOrders = 1024
	// MaxOrder is the largest RDP order accepted.
	MaxOrder = 1 << 16
)

// DefaultOrders returns the RDP orders an Accountant tracks by default:
// 1.25 to 10 in steps of 0.25, every integer from 11 to 64, then 80, 96, 128,
// 192 and 256. Small fractional orders matter for large epsilon, large orders
// for small epsilon: the best order is roughly 1 + 2·log(1/δ)/ε, so this
// list suits ε ≳ 0.1 at δ = 1e−5; pass larger orders for smaller targets.
func DefaultOrders() []float64 {
	var o []float64
	for a := 1.25; a <= 10; a += 0.25 {
		o = append(o, a)
	}
	for a := 11; a <= 64; a++ {
		o = append(o, float64(a))
	}
	return append(o, 80, 96, 128, 192, 256)
}

// Accountant composes the Rényi differential privacy of Poisson-subsampled
// Gaussian mechanism steps (Mironov, Talwar & Zhang 2019) and converts the
// total to (ε, δ). Each step's RDP is computed per order in closed form for
// integer orders and by the paper's convergent series for fractional ones;
// composition adds RDP order by order.
//
// The state is a few kilobytes and round-trips through MarshalBinary, so the
// coordinator can keep it in its replicated (Raft) state. An Accountant is
// not safe for concurrent use.
type Accountant struct {
	orders []float64
	rdp    []float64
	steps  uint64 // mechanism invocations composed
	events uint64 // Step calls
}

// NewAccountant returns an accountant with nothing spent, tracking the given
// orders (nil means DefaultOrders). Orders must be finite, in (1, MaxOrder],
// at most MaxOrders of them; they are sorted and de-duplicated.
func NewAccountant(orders []float64) (*Accountant, error) {
	if orders == nil {
		orders = DefaultOrders()
	}
	o := slices.Clone(orders)
	slices.Sort(o)
	o = slices.Compact(o)
	if err := validateOrders(o); err != nil {
		return nil, fmt.Errorf("dp.NewAccountant: %w", err)
	}
	return &Accountant{orders: o, rdp: make([]float64, len(o))}, nil
}

func validateOrders(o []float64) error {
	if len(o) == 0 || len(o) > MaxOrders {
		return fmt.Errorf("%d orders, want 1..%d: %w", len(o), MaxOrders, ErrInvalidArgument)
	}
	for i, a := range o {
		if !(a > 1 && a <= MaxOrder) {
			return fmt.Errorf("order %v outside (1, %d]: %w", a, MaxOrder, ErrInvalidArgument)
		}
		if i > 0 && !(a > o[i-1]) {
			return fmt.Errorf("orders not strictly increasing at %v: %w", a, ErrInvalidArgument)
		}
	}
	return nil
}

// Orders returns a copy of the tracked orders, ascending.
func (a *Accountant) Orders() []float64 { return slices.Clone(a.orders) }

// RDP returns a copy of the accumulated RDP ε(α), one per order.
func (a *Accountant) RDP() []float64 { return slices.Clone(a.rdp) }

// Steps returns the number of mechanism invocations composed so far.
func (a *Accountant) Steps() uint64 { return a.steps }

// Events returns the number of Step calls so far (rounds, for a round engine
// that calls Step once per round).
func (a *Accountant) Events() uint64 { return a.events }

// Clone returns an independent copy.
func (a *Accountant) Clone() *Accountant {
	return &Accountant{orders: slices.Clone(a.orders), rdp: slices.Clone(a.rdp), steps: a.steps, events: a.events}
}

// Step composes steps invocations of the Gaussian mechanism with noise
// multiplier noiseMultiplier (noise standard deviation divided by the L2
// sensitivity), each applied to a Poisson sample that includes every
// participant independently with probability q. In federated learning one
// round is one step with q = expected clients per round / population.
// noiseMultiplier = 0 means no noise: every later epsilon is +Inf.
func (a *Accountant) Step(q, noiseMultiplier float64, steps int) error {
	rdp, err := a.stepRDP(q, noiseMultiplier, steps)
	if err != nil {
		return fmt.Errorf("dp.Accountant.Step: %w", err)
	}
	for i := range a.rdp {
		a.rdp[i] += rdp[i]
	}
	a.steps += uint64(steps)
	a.events++
	return nil
}

// stepRDP returns the RDP per order of steps invocations, without changing a.
func (a *Accountant) stepRDP(q, noiseMultiplier float64, steps int) ([]float64, error) {
	switch {
	case !(q >= 0 && q <= 1):
		return nil, fmt.Errorf("sampling rate %v outside [0, 1]: %w", q, ErrInvalidArgument)
	case !(noiseMultiplier >= 0) || math.IsInf(noiseMultiplier, 0):
		return nil, fmt.Errorf("noise multiplier %v: %w", noiseMultiplier, ErrInvalidArgument)
	case steps < 0:
		return nil, fmt.Errorf("%d steps: %w", steps, ErrInvalidArgument)
	}
	out := make([]float64, len(a.orders))
	if steps == 0 || q == 0 {
		return out, nil
	}
	for i, alpha := range a.orders {
		r := rdpSampledGaussian(q, noiseMultiplier, alpha)
		if r < 0 || math.IsNaN(r) {
			r = 0 // rounding of a vanishing divergence; RDP is never negative
		}
		out[i] = r * float64(steps)
	}
	return out, nil
}

// Epsilon returns the smallest ε over the tracked orders such that the
// composition so far is (ε, δ)-DP, and the order attaining it. It uses the
// improved RDP-to-DP conversion of Canonne, Kamath & Steinke 2020 (Prop. 12)
// and Balle et al. 2020 (Thm. 21), also used by TF-Privacy and Opacus:
//
//	ε = ε_RDP(α) + log((α−1)/α) − (log δ + log α)/(α−1),
//
// which is never worse than the classic ε_RDP(α) + log(1/δ)/(α−1)
// (EpsilonClassic): 2.52 instead of 2.92 on TF-Privacy's MNIST reference
// (q = 256/60000, z = 1.12, 60 epochs, δ = 1e−5). With nothing
// spent it returns (0, 0). It returns (+Inf, 0) if δ is not in (0, 1) or no
// order gives a finite bound.
func (a *Accountant) Epsilon(delta float64) (eps float64, order float64) {
	return epsilonFromRDP(a.orders, a.rdp, delta, false)
}

// EpsilonClassic is Epsilon with the classic conversion of Mironov 2017,
// ε = ε_RDP(α) + log(1/δ)/(α−1); it matches older published figures.
func (a *Accountant) EpsilonClassic(delta float64) (eps float64, order float64) {
	return epsilonFromRDP(a.orders, a.rdp, delta, true)
}

func epsilonFromRDP(orders, rdp []float64, delta float64, classic bool) (float64, float64) {
	if !(delta > 0 && delta < 1) {
		return math.Inf(1), 0
	}
	spent := false
	for _, r := range rdp {
		if r != 0 {
			spent = true
			break
		}
	}
	if !spent {
		return 0, 0
	}
	best, bestOrder := math.Inf(1), 0.0
	logDelta := math.Log(delta)
	for i, alpha := range orders {
		r := rdp[i]
		if math.IsInf(r, 1) {
			continue
		}
		var e float64
		if classic {
			e = r - logDelta/(alpha-1)
		} else {
			e = r + math.Log1p(-1/alpha) - (logDelta+math.Log(alpha))/(alpha-1)
		}
		if e < best {
			best, bestOrder = e, alpha
		}
	}
	if best < 0 {
		best = 0
	}
	return best, bestOrder
}

const (
	accountantMagic   = "FDPA"
	accountantVersion = 1
	accountantHeader  = 4 + 1 + 8 + 8 + 4
)

// MarshalBinary encodes the accountant: "FDPA", version byte 1, then
// little-endian uint64 steps, uint64 events, uint32 order count n, and n pairs
// of float64 (order, accumulated RDP).
func (a *Accountant) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, accountantHeader+16*len(a.orders))
	b = append(b, accountantMagic...)
	b = append(b, accountantVersion)
	b = binary.LittleEndian.AppendUint64(b, a.steps)
	b = binary.LittleEndian.AppendUint64(b, a.events)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(a.orders)))
	for i, o := range a.orders {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(o))
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(a.rdp[i]))
	}
	return b, nil
}

// UnmarshalBinary decodes the output of MarshalBinary. Input is untrusted: it
// never allocates more than MaxOrders entries, validates every value (orders
// as NewAccountant requires, RDP values ≥ 0 and not NaN) and leaves a
// unchanged on error (wrapping ErrCorrupt).
func (a *Accountant) UnmarshalBinary(data []byte) error {
	if len(data) < accountantHeader || string(data[:4]) != accountantMagic {
		return fmt.Errorf("dp.Accountant.UnmarshalBinary: short input or bad magic: %w", ErrCorrupt)
	}
	if data[4] != accountantVersion {
		return fmt.Errorf("dp.Accountant.UnmarshalBinary: version %d: %w", data[4], ErrCorrupt)
	}
	steps := binary.LittleEndian.Uint64(data[5:])
	events := binary.LittleEndian.Uint64(data[13:])
	n := binary.LittleEndian.Uint32(data[21:])
	if n == 0 || n > MaxOrders || uint64(len(data)) != accountantHeader+16*uint64(n) {
		return fmt.Errorf("dp.Accountant.UnmarshalBinary: %d orders in %d bytes: %w", n, len(data), ErrCorrupt)
	}
	orders := make([]float64, n)
	rdp := make([]float64, n)
	p := data[accountantHeader:]
	for i := range orders {
		orders[i] = math.Float64frombits(binary.LittleEndian.Uint64(p[16*i:]))
		rdp[i] = math.Float64frombits(binary.LittleEndian.Uint64(p[16*i+8:]))
		if !(rdp[i] >= 0) {
			return fmt.Errorf("dp.Accountant.UnmarshalBinary: RDP %v: %w", rdp[i], ErrCorrupt)
		}
	}
	if err := validateOrders(orders); err != nil {
		return fmt.Errorf("dp.Accountant.UnmarshalBinary: %w: %w", ErrCorrupt, err)
	}
	a.orders, a.rdp, a.steps, a.events = orders, rdp, steps, events
	return nil
}
