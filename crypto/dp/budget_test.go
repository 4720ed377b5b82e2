package dp

import (
	"errors"
	"math"
	"testing"
)

func TestNoiseForBudget(t *testing.T) {
	tests := []struct {
		name string
		p    Params
	}{
		{"fl-1000-rounds", Params{Epsilon: 3, Delta: 1e-5, Rounds: 1000, SampleRate: 0.01}},
		{"few-rounds-full", Params{Epsilon: 1, Delta: 1e-6, Rounds: 10, SampleRate: 1}},
		{"loose", Params{Epsilon: 20, Delta: 1e-5, Rounds: 100, SampleRate: 0.05}},
		{"tight", Params{Epsilon: 0.5, Delta: 1e-7, Rounds: 5000, SampleRate: 0.002}},
		{"custom-orders", Params{Epsilon: 2, Delta: 1e-5, Rounds: 200, SampleRate: 0.1, Orders: []float64{2, 4, 8, 16, 32, 64}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			z, err := NoiseForBudget(tt.p)
			if err != nil {
				t.Fatal(err)
			}
			at, err := PlannedEpsilon(tt.p, z)
			if err != nil {
				t.Fatal(err)
			}
			if at > tt.p.Epsilon {
				t.Errorf("z=%v spends ε=%v > target %v", z, at, tt.p.Epsilon)
			}
			below, _ := PlannedEpsilon(tt.p, z*(1-1e-4))
			if !(below > tt.p.Epsilon) {
				t.Errorf("z=%v not minimal: 0.9999·z spends %v ≤ %v", z, below, tt.p.Epsilon)
			}
		})
	}
}

func TestNoiseForBudgetErrors(t *testing.T) {
	_, err := NoiseForBudget(Params{Epsilon: 0.01, Delta: 1e-5, Rounds: 1000, SampleRate: 1})
	if !errors.Is(err, ErrBudgetUnreachable) {
		t.Errorf("unreachable target: %v", err)
	}
	for _, p := range []Params{
		{Epsilon: 0, Delta: 1e-5, Rounds: 1, SampleRate: 1},
		{Epsilon: 1, Delta: 0, Rounds: 1, SampleRate: 1},
		{Epsilon: 1, Delta: 1e-5, Rounds: 0, SampleRate: 1},
		{Epsilon: 1, Delta: 1e-5, Rounds: 1, SampleRate: 0},
		{Epsilon: 1, Delta: 1e-5, Rounds: 1, SampleRate: 1.5},
		{Epsilon: math.NaN(), Delta: 1e-5, Rounds: 1, SampleRate: 1},
		{Epsilon: 1, Delta: 1e-5, Rounds: 1, SampleRate: 1, Orders: []float64{0.5}},
	} {
		if _, err := NoiseForBudget(p); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%+v: %v", p, err)
		}
	}
}

func TestBudgetSpend(t *testing.T) {
	p := Params{Epsilon: 2, Delta: 1e-5, Rounds: 40, SampleRate: 0.05}
	b, err := NewBudget(p)
	if err != nil {
		t.Fatal(err)
	}
	z := b.NoiseMultiplier()
	if want, _ := NoiseForBudget(p); z != want {
		t.Fatalf("noise %v, NoiseForBudget %v", z, want)
	}
	var sumInc, prev float64
	for r := 1; r <= p.Rounds; r++ {
		if pre, err := b.Preview(p.SampleRate); err != nil || b.Rounds() != r-1 {
			t.Fatalf("preview of round %d: %v (rounds %d)", r, err, b.Rounds())
		} else if pre.Round != r {
			t.Fatalf("preview round %d, want %d", pre.Round, r)
		}
		rep, err := b.Spend(p.SampleRate)
		if err != nil {
			t.Fatalf("round %d: %v", r, err)
		}
		if rep.Round != r || rep.NoiseMultiplier != z || rep.SampleRate != p.SampleRate || rep.Delta != p.Delta {
			t.Fatalf("report %+v", rep)
		}
		if !(rep.Epsilon > prev) || rep.EpsilonIncrement <= 0 || rep.EpsilonIncrement > rep.RoundEpsilon+1e-12 {
			t.Fatalf("round %d: ε %v after %v, increment %v, round ε %v", r, rep.Epsilon, prev, rep.EpsilonIncrement, rep.RoundEpsilon)
		}
		if math.Abs(rep.Remaining-(p.Epsilon-rep.Epsilon)) > 1e-12 {
			t.Fatalf("remaining %v", rep.Remaining)
		}
		sumInc += rep.EpsilonIncrement
		prev = rep.Epsilon
	}
	if math.Abs(sumInc-prev) > 1e-9 || prev > p.Epsilon*(1+1e-9) || prev < 0.99*p.Epsilon {
		t.Errorf("after %d rounds ε = %v (increments sum %v), target %v", p.Rounds, prev, sumInc, p.Epsilon)
	}
	if b.Epsilon() != prev {
		t.Errorf("Budget.Epsilon %v, last report %v", b.Epsilon(), prev)
	}
	// One more round is over budget and changes nothing.
	rep, err := b.Spend(p.SampleRate)
	if !errors.Is(err, ErrBudgetExhausted) || rep.Epsilon <= p.Epsilon {
		t.Errorf("extra round: %v, report %+v", err, rep)
	}
	if b.Rounds() != p.Rounds || b.Epsilon() != prev {
		t.Errorf("refused round changed state: rounds %d ε %v", b.Rounds(), b.Epsilon())
	}
	// A round that samples nobody is free.
	if rep, err := b.Spend(0); err != nil || rep.EpsilonIncrement != 0 {
		t.Errorf("q=0 round: %v, %+v", err, rep)
	}
	if _, err := b.Spend(2); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("q=2: %v", err)
	}
}

func TestBudgetFixedNoise(t *testing.T) {
	b, err := NewBudget(Params{Epsilon: 5, Delta: 1e-5, Rounds: 10, SampleRate: 0.1, NoiseMultiplier: 1.3})
	if err != nil {
		t.Fatal(err)
	}
	if b.NoiseMultiplier() != 1.3 || len(b.Params().Orders) != len(DefaultOrders()) {
		t.Errorf("params %+v", b.Params())
	}
}

func TestBudgetMarshalRoundTrip(t *testing.T) {
	p := Params{Epsilon: 4, Delta: 1e-6, Rounds: 30, SampleRate: 0.02, Orders: []float64{1.5, 2, 3, 5, 8, 16, 32, 64}}
	b, err := NewBudget(p)
	if err != nil {
		t.Fatal(err)
	}
	for range 7 {
		if _, err := b.Spend(0.02); err != nil {
			t.Fatal(err)
		}
	}
	data, err := b.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var c Budget
	if err := c.UnmarshalBinary(data); err != nil {
		t.Fatal(err)
	}
	if c.Rounds() != 7 || c.Epsilon() != b.Epsilon() || c.NoiseMultiplier() != b.NoiseMultiplier() {
		t.Fatalf("restored: rounds %d ε %v z %v", c.Rounds(), c.Epsilon(), c.NoiseMultiplier())
	}
	r1, err1 := b.Spend(0.02)
	r2, err2 := c.Spend(0.02)
	if err1 != nil || err2 != nil || r1 != r2 {
		t.Errorf("diverged after restore: %+v / %+v (%v, %v)", r1, r2, err1, err2)
	}
	// Every truncation fails cleanly.
	for i := range data {
		if err := new(Budget).UnmarshalBinary(data[:i]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated to %d: %v", i, err)
		}
	}
}
