package dp

import (
	"math"
	"testing"
)

func TestL2Norm(t *testing.T) {
	tests := []struct {
		name string
		v    []float32
		want float64
	}{
		{"empty", nil, 0},
		{"3-4-5", []float32{3, 4}, 5},
		{"negative", []float32{-1, -1, -1, -1}, 2},
		{"huge", []float32{math.MaxFloat32, math.MaxFloat32}, math.MaxFloat32 * math.Sqrt2},
		{"tiny", []float32{1e-45, 1e-45}, float64(float32(1e-45)) * math.Sqrt2},
		{"inf", []float32{1, float32(math.Inf(-1))}, math.Inf(1)},
	}
	for _, tt := range tests {
		if got := L2Norm(tt.v); math.Abs(got-tt.want) > 1e-15*tt.want && got != tt.want {
			t.Errorf("%s: L2Norm = %v, want %v", tt.name, got, tt.want)
		}
	}
	if got := L2Norm([]float32{1, float32(math.NaN())}); !math.IsNaN(got) {
		t.Errorf("NaN element: %v", got)
	}
}

func TestClipL2(t *testing.T) {
	nan := float32(math.NaN())
	tests := []struct {
		name      string
		v         []float32
		c         float64
		wantScale float64 // 1 = untouched, 0 = zeroed, -1 = "c/norm"
	}{
		{"below", []float32{0.3, 0.4}, 1, 1},
		{"equal", []float32{3, 4}, 5, 1},
		{"above", []float32{3, 4}, 1, -1},
		{"zero-vector", []float32{0, 0, 0}, 0.5, 1},
		{"zero-clip", []float32{1, 2}, 0, 0},
		{"negative-clip", []float32{1, 2}, -3, 0},
		{"nan-clip", []float32{1, 2}, math.NaN(), 0},
		{"inf-clip", []float32{1e30, 1e30}, math.Inf(1), 1},
		{"nan-element", []float32{1, nan, 3}, 10, 0},
		{"inf-element", []float32{1, float32(math.Inf(1))}, 10, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orig := append([]float32(nil), tt.v...)
			norm := L2Norm(orig)
			scale := ClipL2(tt.v, tt.c)
			switch tt.wantScale {
			case 1:
				if scale != 1 {
					t.Errorf("scale %v, want 1", scale)
				}
				for i := range orig {
					if tt.v[i] != orig[i] {
						t.Errorf("element %d changed: %v → %v", i, orig[i], tt.v[i])
					}
				}
			case 0:
				if scale != 0 {
					t.Errorf("scale %v, want 0", scale)
				}
				for i, x := range tt.v {
					if x != 0 {
						t.Errorf("element %d = %v, want 0", i, x)
					}
				}
			default:
				if want := tt.c / norm; scale > want || scale < want*(1-1e-6) {
					t.Errorf("scale %v, want just under %v", scale, want)
				}
				if got := L2Norm(tt.v); got > tt.c || got < tt.c*(1-1e-6) {
					t.Errorf("clipped norm %v, want just under %v", got, tt.c)
				}
			}
		})
	}
}

// The clipped norm never exceeds c, whatever float32 rounding does.
func TestClipL2NeverExceeds(t *testing.T) {
	src := NewSeededSource(21)
	r := bitSource{src: src}
	trials := 3000
	if testing.Short() {
		trials = 600
	}
	for trial := range trials {
		n := 1 + int(r.uniformN(2000))
		v := make([]float32, n)
		spread := math.Ldexp(1, int(r.uniformN(60))-30)
		for i := range v {
			v[i] = float32((float64(src.Uint64()>>11)/(1<<53) - 0.5) * spread)
		}
		c := L2Norm(v) * (float64(src.Uint64()>>11) / (1 << 53))
		dir := append([]float32(nil), v...)
		ClipL2(v, c)
		if got := L2Norm(v); got > c {
			t.Fatalf("trial %d (n=%d): clipped norm %v > c = %v", trial, n, got, c)
		}
		// Direction is kept: v is a non-negative multiple of the original.
		var dot float64
		for i := range v {
			dot += float64(v[i]) * float64(dir[i])
		}
		if cos := dot / (L2Norm(v) * L2Norm(dir)); L2Norm(v) > 0 && cos < 1-1e-6 {
			t.Fatalf("trial %d: direction changed (cos %v)", trial, cos)
		}
	}
}

func TestClipBit(t *testing.T) {
	tests := []struct{ norm, clip, want float64 }{
		{0.5, 1, 0.5}, {1, 1, 0.5}, {1.0000001, 1, -0.5}, {0, 0, 0.5}, {math.NaN(), 1, -0.5}, {3, math.Inf(1), 0.5},
	}
	for _, tt := range tests {
		if got := ClipBit(tt.norm, tt.clip); got != tt.want {
			t.Errorf("ClipBit(%v, %v) = %v, want %v", tt.norm, tt.clip, got, tt.want)
		}
	}
}
