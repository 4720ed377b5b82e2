package tensor

import "math/rand/v2"

// standardize computes y = (x − shift)·scale per input value, with
// constants from its spec and no parameters. Its backward is
// dx = dy·scale; it reads neither x nor y, so it works in place both ways.
type standardize struct {
	lp           *layerPlan
	shift, scale []float32 // in the layer's memory layout, one per input value
}

// newStandardize copies the spec's constants into the layout the layer's
// input has inside the model: a 3-D input stored channels-last gets them
// transposed from [C, H, W] to (H, W, C) order.
func newStandardize(p *layerPlan) *standardize {
	l := &standardize{lp: p, shift: make([]float32, p.inSize), scale: make([]float32, p.inSize)}
	if !p.chLast || p.in[0] == 1 {
		copy(l.shift, p.spec.Shift)
		copy(l.scale, p.spec.Scale)
		return l
	}
	c := p.in[0]
	hw := p.inSize / c
	for ch := range c {
		for q := range hw {
			l.shift[q*c+ch] = p.spec.Shift[ch*hw+q]
			l.scale[q*c+ch] = p.spec.Scale[ch*hw+q]
		}
	}
	return l
}

func (l *standardize) plan() *layerPlan                          { return l.lp }
func (l *standardize) elementwise() bool                         { return true }
func (l *standardize) needsOutput() bool                         { return false }
func (l *standardize) scratch(n int, train bool) (int, int, int) { return 0, 0, 0 }
func (l *standardize) init([]float32, *rand.Rand)                {}

func (l *standardize) forward(_ *pass, _ *buffers, _, x, y []float32, n int) {
	k := l.lp.inSize
	for r := range n {
		yr := y[r*k : (r+1)*k]
		xr, sh, sc := x[r*k:(r+1)*k], l.shift[:len(yr)], l.scale[:len(yr)]
		xr = xr[:len(yr)]
		for j := range yr {
			yr[j] = (xr[j] - sh[j]) * sc[j]
		}
	}
}

func (l *standardize) backward(_ *pass, _ *buffers, _, _, _, _, dy, dx []float32, n int) {
	if dx == nil {
		return
	}
	k := l.lp.inSize
	for r := range n {
		dxr := dx[r*k : (r+1)*k]
		dyr, sc := dy[r*k:(r+1)*k], l.scale[:len(dxr)]
		dyr = dyr[:len(dxr)]
		for j := range dxr {
			dxr[j] = dyr[j] * sc[j]
		}
	}
}
