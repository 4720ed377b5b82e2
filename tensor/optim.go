package tensor

import (
	"fmt"
	"math"
)

// Optimizer updates a flat parameter vector from its gradient.
type Optimizer interface {
	// Step moves params against grads, which must have the same length.
	// Stateful optimizers size their state to params on the first call and
	// panic if a later call passes a different length.
	Step(params, grads []float32)
}

var (
	_ Optimizer = (*SGD)(nil)
	_ Optimizer = (*Adam)(nil)
)

// Proximal is FedProx's proximal term mu/2·||w − Center||². Its gradient,
// mu·(w − Center), is added to the loss gradient before each step, pulling
// local training toward Center, the round's starting weights. It is off
// when Mu is zero or Center is nil; otherwise Center must have the
// parameters' length and must not change during training (copy the
// starting weights, do not alias Model.Params).
type Proximal struct {
	Mu     float32
	Center []float32
}

func (p Proximal) active() bool { return p.Mu != 0 && p.Center != nil }

// SGDConfig configures stochastic gradient descent. Zero values mean the
// documented defaults.
type SGDConfig struct {
	LR          float32 // step size; if zero, 0.01
	Momentum    float32 // heavy-ball momentum (PyTorch convention); zero means none
	Nesterov    bool    // Nesterov momentum instead of heavy ball
	WeightDecay float32 // L2 coefficient λ: λ·w is added to the gradient; zero means none
	Proximal    Proximal
}

// SGD is stochastic gradient descent with optional momentum, weight decay
// and FedProx term:
//
//	g = ∇ + λ·w + mu·(w − w0)
//	v = momentum·v + g
//	w = w − lr·v                 (Nesterov: w − lr·(g + momentum·v))
type SGD struct {
	cfg      SGDConfig
	velocity []float32
}

// NewSGD returns an SGD optimizer with cfg's defaults filled in.
func NewSGD(cfg SGDConfig) *SGD {
	if cfg.LR == 0 {
		cfg.LR = 0.01
	}
	return &SGD{cfg: cfg}
}

// Config returns the configuration with defaults filled in.
func (o *SGD) Config() SGDConfig { return o.cfg }

// Reset forgets the momentum.
func (o *SGD) Reset() { clear(o.velocity) }

// Step implements Optimizer.
func (o *SGD) Step(params, grads []float32) {
	checkStep("SGD", params, grads, o.cfg.Proximal)
	lr, mom, wd := o.cfg.LR, o.cfg.Momentum, o.cfg.WeightDecay
	prox := o.cfg.Proximal
	grads = grads[:len(params)]
	if mom == 0 {
		if !prox.active() {
			sgdPlain(params, grads, lr, wd)
			return
		}
		c, mu := prox.Center[:len(params)], prox.Mu
		for i, g := range grads {
			w := params[i]
			params[i] = w - lr*(g+wd*w+mu*(w-c[i]))
		}
		return
	}
	if o.velocity == nil {
		o.velocity = make([]float32, len(params))
	}
	if len(o.velocity) != len(params) {
		panic(fmt.Sprintf("tensor.SGD.Step: %d parameters after %d", len(params), len(o.velocity)))
	}
	v := o.velocity
	if !prox.active() && !o.cfg.Nesterov {
		sgdMomentum(params, grads, v, lr, wd, mom)
		return
	}
	var c []float32
	mu := prox.Mu
	if prox.active() {
		c = prox.Center[:len(params)]
	}
	for i, g := range grads {
		w := params[i]
		g += wd * w
		if c != nil {
			g += mu * (w - c[i])
		}
		vi := mom*v[i] + g
		v[i] = vi
		if o.cfg.Nesterov {
			params[i] = w - lr*(g+mom*vi)
		} else {
			params[i] = w - lr*vi
		}
	}
}

// sgdPlain is w -= lr·(g + wd·w), unrolled by eight: Go does not
// vectorize, and the unrolled loop runs about twice as fast, which matters
// for small batches where the step is a large share of the work.
func sgdPlain(p, g []float32, lr, wd float32) {
	g = g[:len(p)]
	i := 0
	for ; i+8 <= len(p); i += 8 {
		w, d := (*[8]float32)(p[i:]), (*[8]float32)(g[i:])
		w[0] -= lr * (d[0] + wd*w[0])
		w[1] -= lr * (d[1] + wd*w[1])
		w[2] -= lr * (d[2] + wd*w[2])
		w[3] -= lr * (d[3] + wd*w[3])
		w[4] -= lr * (d[4] + wd*w[4])
		w[5] -= lr * (d[5] + wd*w[5])
		w[6] -= lr * (d[6] + wd*w[6])
		w[7] -= lr * (d[7] + wd*w[7])
	}
	for ; i < len(p); i++ {
		p[i] -= lr * (g[i] + wd*p[i])
	}
}

// sgdMomentum is the heavy-ball step v = mom·v + g + wd·w, w -= lr·v,
// unrolled by four.
func sgdMomentum(p, g, v []float32, lr, wd, mom float32) {
	g, v = g[:len(p)], v[:len(p)]
	i := 0
	for ; i+4 <= len(p); i += 4 {
		w, d, u := (*[4]float32)(p[i:]), (*[4]float32)(g[i:]), (*[4]float32)(v[i:])
		u0 := mom*u[0] + d[0] + wd*w[0]
		u1 := mom*u[1] + d[1] + wd*w[1]
		u2 := mom*u[2] + d[2] + wd*w[2]
		u3 := mom*u[3] + d[3] + wd*w[3]
		u[0], u[1], u[2], u[3] = u0, u1, u2, u3
		w[0] -= lr * u0
		w[1] -= lr * u1
		w[2] -= lr * u2
		w[3] -= lr * u3
	}
	for ; i < len(p); i++ {
		u := mom*v[i] + g[i] + wd*p[i]
		v[i] = u
		p[i] -= lr * u
	}
}

// AdamConfig configures Adam. Zero values mean the documented defaults
// (so β1 = 0 cannot be asked for; use a tiny value).
type AdamConfig struct {
	LR          float32 // step size; if zero, 0.001
	Beta1       float32 // first-moment decay; if zero, 0.9
	Beta2       float32 // second-moment decay; if zero, 0.999
	Epsilon     float32 // added to the root of the second moment; if zero, 1e-8
	WeightDecay float32 // L2 coefficient added to the gradient (not decoupled); zero means none
	Proximal    Proximal
}

// Adam is the Adam optimizer (Kingma and Ba 2015) with bias correction.
type Adam struct {
	cfg  AdamConfig
	m, v []float32
	t    int
}

// NewAdam returns an Adam optimizer with cfg's defaults filled in.
func NewAdam(cfg AdamConfig) *Adam {
	if cfg.LR == 0 {
		cfg.LR = 0.001
	}
	if cfg.Beta1 == 0 {
		cfg.Beta1 = 0.9
	}
	if cfg.Beta2 == 0 {
		cfg.Beta2 = 0.999
	}
	if cfg.Epsilon == 0 {
		cfg.Epsilon = 1e-8
	}
	return &Adam{cfg: cfg}
}

// Config returns the configuration with defaults filled in.
func (o *Adam) Config() AdamConfig { return o.cfg }

// Reset forgets the moments and the step count.
func (o *Adam) Reset() {
	clear(o.m)
	clear(o.v)
	o.t = 0
}

// Step implements Optimizer.
func (o *Adam) Step(params, grads []float32) {
	checkStep("Adam", params, grads, o.cfg.Proximal)
	if o.m == nil {
		o.m = make([]float32, len(params))
		o.v = make([]float32, len(params))
	}
	if len(o.m) != len(params) {
		panic(fmt.Sprintf("tensor.Adam.Step: %d parameters after %d", len(params), len(o.m)))
	}
	o.t++
	b1, b2 := o.cfg.Beta1, o.cfg.Beta2
	// Fold both bias corrections into the step size.
	c1 := 1 - math.Pow(float64(b1), float64(o.t))
	c2 := 1 - math.Pow(float64(b2), float64(o.t))
	lr := float32(float64(o.cfg.LR) * math.Sqrt(c2) / c1)
	eps := o.cfg.Epsilon * float32(math.Sqrt(c2))
	wd := o.cfg.WeightDecay
	var c []float32
	mu := o.cfg.Proximal.Mu
	if o.cfg.Proximal.active() {
		c = o.cfg.Proximal.Center[:len(params)]
	}
	mm, vv := o.m, o.v
	grads = grads[:len(params)]
	for i, g := range grads {
		w := params[i]
		g += wd * w
		if c != nil {
			g += mu * (w - c[i])
		}
		mi := b1*mm[i] + (1-b1)*g
		vi := b2*vv[i] + (1-b2)*g*g
		mm[i], vv[i] = mi, vi
		params[i] = w - lr*mi/(float32(math.Sqrt(float64(vi)))+eps)
	}
}

func checkStep(name string, params, grads []float32, p Proximal) {
	if len(grads) != len(params) {
		panic(fmt.Sprintf("tensor.%s.Step: %d gradients for %d parameters", name, len(grads), len(params)))
	}
	if p.active() && len(p.Center) != len(params) {
		panic(fmt.Sprintf("tensor.%s.Step: proximal center has %d values for %d parameters", name, len(p.Center), len(params)))
	}
}
