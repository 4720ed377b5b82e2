package dp

import (
	"encoding/binary"
	"fmt"
	"math"
)

// MaxNoiseMultiplier bounds the search of NoiseForBudget.
const MaxNoiseMultiplier = 1e4

// budgetSlack is the relative tolerance when comparing a cumulative epsilon
// with its target, so that composing round by round (a float sum) accepts
// what NoiseForBudget computed in one multiplication.
const budgetSlack = 1e-9

// Params describes the privacy plan of a training run: a total (ε, δ) target
// over Rounds rounds, each sampling clients independently with probability
// SampleRate and releasing one noised aggregate.
type Params struct {
	// Epsilon is the total ε the run may spend, > 0.
	Epsilon float64
	// Delta is the δ of the guarantee, in (0, 1); usually below 1/population.
	Delta float64
	// Rounds is the number of rounds planned, ≥ 1.
	Rounds int
	// SampleRate q ∈ (0, 1] is the expected fraction of the population that
	// takes part in one round.
	SampleRate float64
	// NoiseMultiplier z is the noise standard deviation over the clip norm.
	// If zero, NewBudget chooses the smallest z that meets the target
	// (NoiseForBudget).
	NoiseMultiplier float64
	// Orders are the RDP orders to track; nil means DefaultOrders.
	Orders []float64
}

// Validate reports whether p is a usable plan.
func (p Params) Validate() error {
	switch {
	case !(p.Epsilon > 0) || math.IsInf(p.Epsilon, 0):
		return fmt.Errorf("dp.Params: epsilon %v: %w", p.Epsilon, ErrInvalidArgument)
	case !(p.Delta > 0 && p.Delta < 1):
		return fmt.Errorf("dp.Params: delta %v: %w", p.Delta, ErrInvalidArgument)
	case p.Rounds < 1:
		return fmt.Errorf("dp.Params: %d rounds: %w", p.Rounds, ErrInvalidArgument)
	case !(p.SampleRate > 0 && p.SampleRate <= 1):
		return fmt.Errorf("dp.Params: sample rate %v: %w", p.SampleRate, ErrInvalidArgument)
	case !(p.NoiseMultiplier >= 0 && p.NoiseMultiplier <= MaxNoiseMultiplier):
		return fmt.Errorf("dp.Params: noise multiplier %v: %w", p.NoiseMultiplier, ErrInvalidArgument)
	}
	if p.Orders != nil {
		if _, err := NewAccountant(p.Orders); err != nil {
			return fmt.Errorf("dp.Params: %w", err)
		}
	}
	return nil
}

// PlannedEpsilon returns the ε that p.Rounds rounds at p.SampleRate with the
// given noise multiplier spend at p.Delta (improved conversion, see
// Accountant.Epsilon).
func PlannedEpsilon(p Params, noiseMultiplier float64) (float64, error) {
	p.NoiseMultiplier = 0
	if err := p.Validate(); err != nil {
		return 0, fmt.Errorf("dp.PlannedEpsilon: %w", err)
	}
	acct, err := NewAccountant(p.Orders)
	if err != nil {
		return 0, fmt.Errorf("dp.PlannedEpsilon: %w", err)
	}
	if err := acct.Step(p.SampleRate, noiseMultiplier, p.Rounds); err != nil {
		return 0, fmt.Errorf("dp.PlannedEpsilon: %w", err)
	}
	eps, _ := acct.Epsilon(p.Delta)
	return eps, nil
}

// NoiseForBudget returns the smallest noise multiplier z (to a relative
// 1e−6, rounded up) such that p.Rounds rounds at p.SampleRate spend at most
// p.Epsilon at p.Delta. ε decreases with z, so it brackets the answer by
// doubling and halving and then bisects. p.NoiseMultiplier is ignored. It
// returns ErrBudgetUnreachable if even MaxNoiseMultiplier spends too much.
func NoiseForBudget(p Params) (float64, error) {
	p.NoiseMultiplier = 0
	if err := p.Validate(); err != nil {
		return 0, fmt.Errorf("dp.NoiseForBudget: %w", err)
	}
	acct, err := NewAccountant(p.Orders)
	if err != nil {
		return 0, fmt.Errorf("dp.NoiseForBudget: %w", err)
	}
	eps := func(z float64) float64 {
		rdp, err := acct.stepRDP(p.SampleRate, z, p.Rounds)
		if err != nil {
			return math.Inf(1)
		}
		e, _ := epsilonFromRDP(acct.orders, rdp, p.Delta, false)
		return e
	}
	fits := func(z float64) bool { return eps(z) <= p.Epsilon }
	lo, hi := 0.0, 1.0
	for !fits(hi) {
		lo, hi = hi, 2*hi
		if hi > MaxNoiseMultiplier {
			if fits(MaxNoiseMultiplier) {
				hi = MaxNoiseMultiplier
				break
			}
			return 0, fmt.Errorf("dp.NoiseForBudget: epsilon %v at delta %v needs z > %v: %w",
				p.Epsilon, p.Delta, float64(MaxNoiseMultiplier), ErrBudgetUnreachable)
		}
	}
	if lo == 0 {
		// hi = 1 fits: look for a failing lower bracket.
		for lo = hi / 2; fits(lo); lo /= 2 {
			hi = lo
			if lo < 1e-6 {
				return hi, nil
			}
		}
	}
	for hi-lo > 1e-6*hi {
		mid := lo + (hi-lo)/2
		if fits(mid) {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi, nil
}

// Report is what one round spends, for logs, metrics and the operator.
type Report struct {
	// Round is the 1-based index of the round accounted.
	Round int
	// SampleRate and NoiseMultiplier are the round's q and z.
	SampleRate, NoiseMultiplier float64
	// Delta is the δ all epsilons refer to.
	Delta float64
	// RoundEpsilon is the ε of this round on its own.
	RoundEpsilon float64
	// EpsilonIncrement is how much this round raised the cumulative ε. RDP
	// composes sub-additively in ε, so it is usually well below RoundEpsilon.
	EpsilonIncrement float64
	// Epsilon is the cumulative ε after the round, and Order the RDP order
	// that attains it.
	Epsilon, Order float64
	// Remaining is the target ε minus Epsilon.
	Remaining float64
}

// Budget tracks a run's privacy spending against its Params: the round engine
// asks it for the noise multiplier, and calls Spend once per round before
// releasing the noised aggregate. It is not safe for concurrent use.
type Budget struct {
	params Params
	acct   *Accountant
	// One round's RDP at sampling rate cacheQ (rounds usually repeat q).
	cacheQ   float64
	cacheRDP []float64
}

// NewBudget returns a budget with nothing spent. If p.NoiseMultiplier is
// zero it is set by NoiseForBudget.
func NewBudget(p Params) (*Budget, error) {
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("dp.NewBudget: %w", err)
	}
	acct, err := NewAccountant(p.Orders)
	if err != nil {
		return nil, fmt.Errorf("dp.NewBudget: %w", err)
	}
	p.Orders = acct.Orders()
	if p.NoiseMultiplier == 0 {
		z, err := NoiseForBudget(p)
		if err != nil {
			return nil, fmt.Errorf("dp.NewBudget: %w", err)
		}
		p.NoiseMultiplier = z
	}
	return &Budget{params: p, acct: acct}, nil
}

// Params returns the plan, with the chosen noise multiplier and the orders.
func (b *Budget) Params() Params {
	p := b.params
	p.Orders = b.acct.Orders()
	return p
}

// NoiseMultiplier returns z, the noise standard deviation over the clip norm
// that every round must use.
func (b *Budget) NoiseMultiplier() float64 { return b.params.NoiseMultiplier }

// Rounds returns the number of rounds spent.
func (b *Budget) Rounds() int { return int(b.acct.Events()) }

// Epsilon returns the cumulative ε spent at the plan's δ.
func (b *Budget) Epsilon() float64 {
	e, _ := b.acct.Epsilon(b.params.Delta)
	return e
}

// Accountant returns a copy of the underlying accountant.
func (b *Budget) Accountant() *Accountant { return b.acct.Clone() }

// Preview returns the report a round with sampling rate q would produce,
// without spending it. The error wraps ErrBudgetExhausted when the round
// would exceed the target; the report is still filled in.
func (b *Budget) Preview(q float64) (Report, error) {
	r, _, err := b.preview(q)
	return r, err
}

// Spend accounts one round with sampling rate q (the realised or planned
// fraction of the population sampled) and the budget's noise multiplier. If
// the round would take the cumulative ε above the target it spends nothing
// and returns an error wrapping ErrBudgetExhausted: the round's aggregate
// must then not be released.
func (b *Budget) Spend(q float64) (Report, error) {
	r, next, err := b.preview(q)
	if err != nil {
		return r, err
	}
	b.acct = next
	return r, nil
}

func (b *Budget) preview(q float64) (Report, *Accountant, error) {
	z := b.params.NoiseMultiplier
	before, _ := b.acct.Epsilon(b.params.Delta)
	if b.cacheRDP == nil || b.cacheQ != q {
		rdp, err := b.acct.stepRDP(q, z, 1)
		if err != nil {
			return Report{}, nil, fmt.Errorf("dp.Budget.Spend: %w", err)
		}
		b.cacheQ, b.cacheRDP = q, rdp
	}
	next := b.acct.Clone()
	for i := range next.rdp {
		next.rdp[i] += b.cacheRDP[i]
	}
	next.steps++
	next.events++
	roundEps, _ := epsilonFromRDP(next.orders, b.cacheRDP, b.params.Delta, false)
	after, order := next.Epsilon(b.params.Delta)
	r := Report{
		Round:            int(next.events),
		SampleRate:       q,
		NoiseMultiplier:  z,
		Delta:            b.params.Delta,
		RoundEpsilon:     roundEps,
		EpsilonIncrement: after - before,
		Epsilon:          after,
		Order:            order,
		Remaining:        b.params.Epsilon - after,
	}
	if after > b.params.Epsilon*(1+budgetSlack) {
		return r, nil, fmt.Errorf("dp.Budget.Spend: round %d would reach epsilon %.4g > %.4g: %w",
			r.Round, after, b.params.Epsilon, ErrBudgetExhausted)
	}
	return r, next, nil
}

const (
	budgetMagic   = "FDPB"
	budgetVersion = 1
	budgetHeader  = 4 + 1 + 5*8 + 4
)

// MarshalBinary encodes the budget: "FDPB", version byte 1, little-endian
// float64 Epsilon, float64 Delta, uint64 Rounds, float64 SampleRate, float64
// NoiseMultiplier, uint32 length of the accountant's encoding, and that
// encoding (Accountant.MarshalBinary), which carries the orders.
func (b *Budget) MarshalBinary() ([]byte, error) {
	inner, err := b.acct.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("dp.Budget.MarshalBinary: %w", err)
	}
	out := make([]byte, 0, budgetHeader+len(inner))
	out = append(out, budgetMagic...)
	out = append(out, budgetVersion)
	out = binary.LittleEndian.AppendUint64(out, math.Float64bits(b.params.Epsilon))
	out = binary.LittleEndian.AppendUint64(out, math.Float64bits(b.params.Delta))
	out = binary.LittleEndian.AppendUint64(out, uint64(b.params.Rounds))
	out = binary.LittleEndian.AppendUint64(out, math.Float64bits(b.params.SampleRate))
	out = binary.LittleEndian.AppendUint64(out, math.Float64bits(b.params.NoiseMultiplier))
	out = binary.LittleEndian.AppendUint32(out, uint32(len(inner)))
	return append(out, inner...), nil
}

// UnmarshalBinary decodes the output of MarshalBinary, validating the plan
// and the accountant; it leaves b unchanged on error (wrapping ErrCorrupt).
func (b *Budget) UnmarshalBinary(data []byte) error {
	if len(data) < budgetHeader || string(data[:4]) != budgetMagic {
		return fmt.Errorf("dp.Budget.UnmarshalBinary: short input or bad magic: %w", ErrCorrupt)
	}
	if data[4] != budgetVersion {
		return fmt.Errorf("dp.Budget.UnmarshalBinary: version %d: %w", data[4], ErrCorrupt)
	}
	f := func(i int) float64 { return math.Float64frombits(binary.LittleEndian.Uint64(data[5+8*i:])) }
	rounds := binary.LittleEndian.Uint64(data[21:])
	if rounds > math.MaxInt32 {
		return fmt.Errorf("dp.Budget.UnmarshalBinary: %d rounds: %w", rounds, ErrCorrupt)
	}
	p := Params{Epsilon: f(0), Delta: f(1), Rounds: int(rounds), SampleRate: f(3), NoiseMultiplier: f(4)}
	if err := p.Validate(); err != nil || p.NoiseMultiplier == 0 {
		return fmt.Errorf("dp.Budget.UnmarshalBinary: plan: %w", ErrCorrupt)
	}
	n := binary.LittleEndian.Uint32(data[45:])
	if uint64(len(data)) != budgetHeader+uint64(n) {
		return fmt.Errorf("dp.Budget.UnmarshalBinary: accountant length %d in %d bytes: %w", n, len(data), ErrCorrupt)
	}
	acct := new(Accountant)
	if err := acct.UnmarshalBinary(data[budgetHeader:]); err != nil {
		return fmt.Errorf("dp.Budget.UnmarshalBinary: %w", err)
	}
	b.params, b.acct = p, acct
	b.cacheQ, b.cacheRDP = 0, nil
	return nil
}
