package tensor

import (
	"math"
	"testing"
)

func TestSGDSteps(t *testing.T) {
	tests := []struct {
		name  string
		cfg   SGDConfig
		steps int
		p0, g float32
		want  float32 // parameter after steps with constant gradient g
	}{
		{"default lr", SGDConfig{}, 1, 1, 2, 1 - 0.01*2},
		{"plain", SGDConfig{LR: 0.1}, 2, 1, 1, 0.8},
		// v1 = 1, v2 = 0.5+1 = 1.5: p = 1 - 0.1·(1 + 1.5).
		{"momentum", SGDConfig{LR: 0.1, Momentum: 0.5}, 2, 1, 1, 0.75},
		// g1 = 1: v1 = 1, p1 = 1 - 0.1(1 + 0.5) = 0.85.
		{"nesterov", SGDConfig{LR: 0.1, Momentum: 0.5, Nesterov: true}, 1, 1, 1, 0.85},
		// g = 1 + 0.5·1 = 1.5: p = 1 - 0.1·1.5.
		{"weight decay", SGDConfig{LR: 0.1, WeightDecay: 0.5}, 1, 1, 1, 0.85},
		// g = 0 + 2·(1 - 0.5): p = 1 - 0.1·1.
		{"proximal", SGDConfig{LR: 0.1, Proximal: Proximal{Mu: 2, Center: []float32{0.5}}}, 1, 1, 0, 0.9},
		{"proximal momentum", SGDConfig{LR: 0.1, Momentum: 0.9, Proximal: Proximal{Mu: 2, Center: []float32{0.5}}}, 1, 1, 0, 0.9},
		{"proximal off without center", SGDConfig{LR: 0.1, Proximal: Proximal{Mu: 2}}, 1, 1, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := NewSGD(tt.cfg)
			p := []float32{tt.p0}
			for range tt.steps {
				o.Step(p, []float32{tt.g})
			}
			if math.Abs(float64(p[0]-tt.want)) > 1e-6 {
				t.Errorf("after %d steps p = %v, want %v", tt.steps, p[0], tt.want)
			}
		})
	}
}

func TestAdamFirstStepAndDefaults(t *testing.T) {
	o := NewAdam(AdamConfig{})
	c := o.Config()
	if c.LR != 0.001 || c.Beta1 != 0.9 || c.Beta2 != 0.999 || c.Epsilon != 1e-8 {
		t.Fatalf("defaults %+v", c)
	}
	// With bias correction the first step is lr·sign(g) (up to epsilon).
	p := []float32{1, 1, 1}
	o.Step(p, []float32{3, -0.01, 0})
	want := []float32{1 - 0.001, 1 + 0.001, 1}
	for i := range p {
		if math.Abs(float64(p[i]-want[i])) > 1e-6 {
			t.Errorf("p[%d] = %v, want %v", i, p[i], want[i])
		}
	}
	o.Reset()
	if o.t != 0 || o.m[0] != 0 {
		t.Error("Reset kept state")
	}
}

// Both optimizers must minimize a quadratic 0.5·Σ a_i (w_i − t_i)²,
// including with the proximal term pulling toward the same target.
func TestOptimizersConverge(t *testing.T) {
	a := []float32{1, 4, 0.5, 2}
	target := []float32{3, -1, 0.5, 2}
	opts := map[string]Optimizer{
		"sgd":          NewSGD(SGDConfig{LR: 0.1}),
		"sgd-momentum": NewSGD(SGDConfig{LR: 0.05, Momentum: 0.9}),
		"sgd-nesterov": NewSGD(SGDConfig{LR: 0.05, Momentum: 0.9, Nesterov: true}),
		"adam":         NewAdam(AdamConfig{LR: 0.05}),
		"adam-prox":    NewAdam(AdamConfig{LR: 0.05, Proximal: Proximal{Mu: 0.5, Center: target}}),
	}
	for name, o := range opts {
		t.Run(name, func(t *testing.T) {
			w := make([]float32, 4)
			g := make([]float32, 4)
			for range 2000 {
				for i := range w {
					g[i] = a[i] * (w[i] - target[i])
				}
				o.Step(w, g)
			}
			for i := range w {
				if math.Abs(float64(w[i]-target[i])) > 1e-2 {
					t.Errorf("w[%d] = %v, want %v", i, w[i], target[i])
				}
			}
		})
	}
}

func TestOptimizerPanicsOnLengthMismatch(t *testing.T) {
	tests := []struct {
		name string
		fn   func()
	}{
		{"sgd grads", func() { NewSGD(SGDConfig{}).Step(make([]float32, 3), make([]float32, 2)) }},
		{"adam grads", func() { NewAdam(AdamConfig{}).Step(make([]float32, 3), make([]float32, 4)) }},
		{"center", func() {
			NewSGD(SGDConfig{Proximal: Proximal{Mu: 1, Center: make([]float32, 2)}}).Step(make([]float32, 3), make([]float32, 3))
		}},
		{"state", func() {
			o := NewSGD(SGDConfig{Momentum: 0.9})
			o.Step(make([]float32, 3), make([]float32, 3))
			o.Step(make([]float32, 4), make([]float32, 4))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			tt.fn()
		})
	}
}

// The unrolled fast paths must match the general loop on lengths that do
// and do not divide by the unrolling.
func TestSGDFastPathsMatchGeneral(t *testing.T) {
	for _, n := range []int{1, 7, 8, 13, 64, 1001} {
		for _, cfg := range []SGDConfig{{LR: 0.1, WeightDecay: 0.01}, {LR: 0.1, Momentum: 0.9, WeightDecay: 0.01}} {
			p1, p2 := make([]float32, n), make([]float32, n)
			g := make([]float32, n)
			for i := range n {
				p1[i] = float32(i%5) - 2
				g[i] = float32(i%3) - 1
			}
			copy(p2, p1)
			fast := NewSGD(cfg)
			// A proximal term with mu ≈ 0 forces the general loop.
			slow := NewSGD(SGDConfig{LR: cfg.LR, Momentum: cfg.Momentum, WeightDecay: cfg.WeightDecay,
				Proximal: Proximal{Mu: 1e-30, Center: make([]float32, n)}})
			for range 3 {
				fast.Step(p1, g)
				slow.Step(p2, g)
			}
			for i := range n {
				if math.Abs(float64(p1[i]-p2[i])) > 1e-6 {
					t.Fatalf("n=%d %+v: p[%d] fast %v, general %v", n, cfg, i, p1[i], p2[i])
				}
			}
		}
	}
}
