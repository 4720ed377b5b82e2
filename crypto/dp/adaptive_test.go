package dp

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// The clip norm converges to the target quantile of the update norms.
func TestAdaptiveClipConverges(t *testing.T) {
	type dist struct {
		name     string
		draw     func(r *rand.Rand) float64
		quantile func(g float64) float64
	}
	logNormal := dist{"lognormal",
		func(r *rand.Rand) float64 { return math.Exp(r.NormFloat64()) },
		func(g float64) float64 { return math.Exp(math.Sqrt2 * math.Erfinv(2*g-1)) }}
	uniform := dist{"uniform(0,8)",
		func(r *rand.Rand) float64 { return 8 * r.Float64() },
		func(g float64) float64 { return 8 * g }}
	tests := []struct {
		d     dist
		gamma float64
	}{{logNormal, 0.5}, {logNormal, 0.9}, {logNormal, 0.2}, {uniform, 0.5}, {uniform, 0.75}}
	const clients, rounds, tail = 1000, 400, 100
	for i, tt := range tests {
		t.Run(fmt.Sprintf("%s/q%.2f", tt.d.name, tt.gamma), func(t *testing.T) {
			src := NewSeededSource(uint64(500 + i))
			r := rand.New(src)
			a, err := NewAdaptiveClip(AdaptiveClipConfig{TargetQuantile: tt.gamma, BitNoise: clients / 20})
			if err != nil {
				t.Fatal(err)
			}
			var logSum, fracSum float64
			for round := range rounds {
				c := a.Clip()
				var sum, below float64
				for range clients {
					b := ClipBit(tt.d.draw(r), c)
					sum += b
					if b > 0 {
						below++
					}
				}
				if _, err := a.Update(sum, clients, src); err != nil {
					t.Fatal(err)
				}
				if round >= rounds-tail {
					logSum += math.Log(c)
					fracSum += below / clients
				}
			}
			want := tt.d.quantile(tt.gamma)
			got := math.Exp(logSum / tail)
			if math.Abs(got/want-1) > 0.05 {
				t.Errorf("γ=%v: clip settles at %.4f, true quantile %.4f", tt.gamma, got, want)
			}
			if frac := fracSum / tail; math.Abs(frac-tt.gamma) > 0.02 {
				t.Errorf("γ=%v: %.3f of updates unclipped", tt.gamma, frac)
			}
			if a.Rounds() != rounds {
				t.Errorf("rounds %d", a.Rounds())
			}
		})
	}
}

func TestAdaptiveClipUpdateRule(t *testing.T) {
	a, err := NewAdaptiveClip(AdaptiveClipConfig{InitialClip: 2, TargetQuantile: 0.8, LearningRate: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	// All 10 clients unclipped: b̄ = 1, C ← 2·exp(−0.5·0.2).
	c, err := a.Update(5, 10, nil)
	if want := 2 * math.Exp(-0.1); err != nil || math.Abs(c-want) > 1e-15 {
		t.Fatalf("all below: %v, want %v (%v)", c, want, err)
	}
	// All clipped: b̄ = 0, C ← C·exp(0.5·0.8).
	c2, _ := a.Update(-5, 10, nil)
	if want := c * math.Exp(0.4); math.Abs(c2-want) > 1e-15 {
		t.Fatalf("all above: %v, want %v", c2, want)
	}
	// A noised sum outside [−n/2, n/2] is treated as a fraction in [0, 1].
	c3, _ := a.Update(1e9, 10, nil)
	if want := c2 * math.Exp(-0.1); math.Abs(c3-want) > 1e-15 {
		t.Fatalf("clamped: %v, want %v", c3, want)
	}
}

func TestAdaptiveClipBoundsAndDefaults(t *testing.T) {
	a, err := NewAdaptiveClip(AdaptiveClipConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg := a.Config(); cfg.InitialClip != 0.1 || cfg.TargetQuantile != 0.5 || cfg.LearningRate != 0.2 || a.Clip() != 0.1 {
		t.Errorf("defaults: %+v clip %v", cfg, a.Clip())
	}
	b, _ := NewAdaptiveClip(AdaptiveClipConfig{InitialClip: 1, MinClip: 0.5, MaxClip: 1.1, LearningRate: 5})
	for range 10 {
		_, _ = b.Update(-50, 100, nil)
	}
	if b.Clip() != 1.1 {
		t.Errorf("max bound: %v", b.Clip())
	}
	for range 10 {
		_, _ = b.Update(50, 100, nil)
	}
	if b.Clip() != 0.5 {
		t.Errorf("min bound: %v", b.Clip())
	}
	bad := []AdaptiveClipConfig{
		{InitialClip: -1}, {TargetQuantile: 1}, {TargetQuantile: -0.1}, {LearningRate: -1},
		{BitNoise: -1}, {MinClip: 2, MaxClip: 1}, {InitialClip: math.Inf(1)}, {LearningRate: math.NaN()},
	}
	for _, cfg := range bad {
		if _, err := NewAdaptiveClip(cfg); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%+v: %v", cfg, err)
		}
	}
	n, _ := NewAdaptiveClip(AdaptiveClipConfig{BitNoise: 3})
	for _, call := range []func() error{
		func() error { _, err := n.Update(1, 10, nil); return err },
		func() error { _, err := n.Update(1, 0, NewSeededSource(1)); return err },
		func() error { _, err := n.Update(math.NaN(), 10, NewSeededSource(1)); return err },
	} {
		if err := call(); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("bad update: %v", err)
		}
	}
	if n.Rounds() != 0 || n.Clip() != 0.1 {
		t.Errorf("failed updates changed state: %d %v", n.Rounds(), n.Clip())
	}
}

func TestUpdateNoiseMultiplier(t *testing.T) {
	for _, tt := range []struct{ z, sb float64 }{{1, 5}, {1.1, 0.6}, {0.5, 100}, {3, 10}} {
		zd, err := UpdateNoiseMultiplier(tt.z, tt.sb)
		if err != nil {
			t.Fatal(err)
		}
		// The combined mechanism has noise multiplier z.
		if got := 1 / math.Sqrt(1/(zd*zd)+1/(4*tt.sb*tt.sb)); math.Abs(got-tt.z) > 1e-12 {
			t.Errorf("z=%v σb=%v: z_Δ=%v combines to %v", tt.z, tt.sb, zd, got)
		}
		if zd <= tt.z {
			t.Errorf("z_Δ=%v should exceed z=%v", zd, tt.z)
		}
	}
	if zd, err := UpdateNoiseMultiplier(1.2, math.Inf(1)); err != nil || zd != 1.2 {
		t.Errorf("no bits: %v %v", zd, err)
	}
	for _, tt := range []struct{ z, sb float64 }{{1, 0.5}, {1, 0}, {0, 1}, {-1, 1}, {1, -1}, {math.NaN(), 1}} {
		if _, err := UpdateNoiseMultiplier(tt.z, tt.sb); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("(%v, %v): %v", tt.z, tt.sb, err)
		}
	}
}

func TestAdaptiveClipMarshal(t *testing.T) {
	a, _ := NewAdaptiveClip(AdaptiveClipConfig{InitialClip: 0.7, TargetQuantile: 0.6, BitNoise: 2, MaxClip: 10})
	src := NewSeededSource(3)
	for range 5 {
		_, _ = a.Update(3, 20, src)
	}
	data, err := a.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var b AdaptiveClip
	if err := b.UnmarshalBinary(data); err != nil {
		t.Fatal(err)
	}
	if b != *a {
		t.Errorf("round trip: %+v, want %+v", b, *a)
	}
	for i := range data {
		if err := new(AdaptiveClip).UnmarshalBinary(data[:i]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated to %d: %v", i, err)
		}
	}
}

// Bits scaled by BitCoordinateScale and noised like the update coordinates
// decode to a count with noise σ_b, and the pair accounts as z.
func TestBitCoordinateScale(t *testing.T) {
	const zd, clip, sb, agents = 1.3, 0.4, 5.0, 50
	beta, err := BitCoordinateScale(zd, clip, sb)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(NewSeededSource(77))
	const trials = 20_000
	i := 0
	mean, v, seM, seV := moments(t, trials, func() float64 {
		i++
		var sum, count float64
		for range agents {
			bit := ClipBit(r.Float64(), 0.5)
			count += bit
			// Each agent's share of the per-coordinate noise z_Δ·C.
			sum += beta*bit + r.NormFloat64()*zd*clip/math.Sqrt(agents)
		}
		return sum/beta - count
	})
	if math.Abs(mean) > 5*seM || math.Abs(v-sb*sb) > 5*seV {
		t.Errorf("decoded bit noise: mean %v, variance %v, want 0 and %v", mean, v, sb*sb)
	}
	// The concatenated vector's multiplier maps back through
	// UpdateNoiseMultiplier to z_Δ.
	zTotal := zd * clip / math.Sqrt(clip*clip+beta*beta/4)
	back, err := UpdateNoiseMultiplier(zTotal, sb)
	if err != nil || math.Abs(back-zd) > 1e-12 {
		t.Errorf("z = %v maps back to z_Δ = %v, want %v (%v)", zTotal, back, zd, err)
	}
	for _, a := range [][3]float64{{0, 1, 1}, {1, 0, 1}, {1, 1, 0}, {math.NaN(), 1, 1}, {1, math.Inf(1), 1}} {
		if _, err := BitCoordinateScale(a[0], a[1], a[2]); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%v: %v", a, err)
		}
	}
}
