package encoding

import (
	"math"
	"math/rand/v2"
	"testing"
)

// refHalf is binary16 → float64 from the IEEE 754 definition.
func refHalf(h uint16) float64 {
	e := int(h>>10) & 0x1f
	m := float64(h & 0x3ff)
	var v float64
	switch e {
	case 0:
		v = math.Ldexp(m, -24)
	case 0x1f:
		if m != 0 {
			return math.NaN()
		}
		v = math.Inf(1)
	default:
		v = math.Ldexp(1+m/1024, e-15)
	}
	if h&0x8000 != 0 {
		v = -v
	}
	return v
}

// refToHalf is float32 → binary16 by search over the finite halves and
// explicit round-half-to-even; NaN is handled by the caller.
func refToHalf(f float32) uint16 {
	a := math.Abs(float64(f))
	var sign uint16
	if math.Signbit(float64(f)) {
		sign = 0x8000
	}
	if a >= 65520 { // halfway between 65504 and 2^16 ties to the even Inf
		return sign | 0x7c00
	}
	// Largest finite half <= a.
	lo, hi := uint16(0), uint16(0x7bff)
	for lo < hi {
		mid := lo + (hi-lo+1)/2
		if refHalf(mid) <= a {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	next := lo + 1
	nextV := 65536.0
	if next < 0x7c00 {
		nextV = refHalf(next)
	}
	dl, dh := a-refHalf(lo), nextV-a
	switch {
	case dl < dh:
		return sign | lo
	case dh < dl:
		return sign | next
	case lo&1 == 0:
		return sign | lo
	default:
		return sign | next
	}
}

func TestHalfToFloat32AllValues(t *testing.T) {
	for i := range 1 << 16 {
		h := uint16(i)
		got := HalfToFloat32(h)
		want := refHalf(h)
		if math.IsNaN(want) {
			if !math.IsNaN(float64(got)) {
				t.Fatalf("HalfToFloat32(%#04x) = %v, want NaN", h, got)
			}
			continue
		}
		if float64(got) != want || math.Signbit(float64(got)) != math.Signbit(want) {
			t.Fatalf("HalfToFloat32(%#04x) = %v, want %v", h, got, want)
		}
	}
}

// TestHalfRoundTripAllValues: every one of the 65536 half values, NaNs
// included, survives half → float32 → half bit for bit.
func TestHalfRoundTripAllValues(t *testing.T) {
	for i := range 1 << 16 {
		h := uint16(i)
		if got := Float32ToHalf(HalfToFloat32(h)); got != h {
			t.Fatalf("round trip %#04x → %v → %#04x", h, HalfToFloat32(h), got)
		}
	}
}

func TestFloat32ToHalfSpecialValues(t *testing.T) {
	tests := []struct {
		name string
		in   float32
		want uint16
	}{
		{"zero", 0, 0x0000},
		{"negative zero", float32(math.Copysign(0, -1)), 0x8000},
		{"one", 1, 0x3c00},
		{"minus two", -2, 0xc000},
		{"max finite", 65504, 0x7bff},
		{"below overflow tie", 65519.996, 0x7bff},
		{"overflow tie to even Inf", 65520, 0x7c00},
		{"large", 1e10, 0x7c00},
		{"+Inf", float32(math.Inf(1)), 0x7c00},
		{"-Inf", float32(math.Inf(-1)), 0xfc00},
		{"smallest normal", 0x1p-14, 0x0400},
		{"largest subnormal", 0x3ffp-24, 0x03ff},
		{"subnormal rounds up to normal", 0x7ffp-25, 0x0400},
		{"smallest subnormal", 0x1p-24, 0x0001},
		{"half smallest subnormal ties to zero", 0x1p-25, 0x0000},
		{"just above half smallest subnormal", 0x1.000002p-25, 0x0001},
		{"1.5 units ties up to even 2", 0x3p-25, 0x0002},
		{"2.5 units ties down to even 2", 0x5p-25, 0x0002},
		{"tiny", 1e-30, 0x0000},
		{"negative tiny", -1e-30, 0x8000},
		{"float32 denormal", 0x1p-149, 0x0000},
		{"tie between 1 and next even", 1 + 0x1p-11, 0x3c00},
		{"tie between 1+ulp and next rounds up", 1 + 3*0x1p-11, 0x3c02},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Float32ToHalf(tt.in); got != tt.want {
				t.Errorf("Float32ToHalf(%g) = %#04x, want %#04x", tt.in, got, tt.want)
			}
			if got := refToHalf(tt.in); got != tt.want {
				t.Errorf("reference(%g) = %#04x, want %#04x (test table wrong?)", tt.in, got, tt.want)
			}
		})
	}
	if h := Float32ToHalf(float32(math.NaN())); h&0x7c00 != 0x7c00 || h&0x3ff == 0 {
		t.Errorf("NaN → %#04x, not a NaN", h)
	}
	// A NaN whose payload lives only in low bits stays NaN.
	if h := Float32ToHalf(math.Float32frombits(0x7f800001)); h&0x3ff == 0 {
		t.Errorf("low-payload NaN → %#04x, became Inf", h)
	}
}

// TestFloat32ToHalfMatchesReference checks the fast conversion against the
// search-based reference on every rounding boundary of every half (the
// midpoints and their float32 neighbours) and on random float32 bit patterns.
func TestFloat32ToHalfMatchesReference(t *testing.T) {
	check := func(f float32) {
		if math.IsNaN(float64(f)) {
			return
		}
		if got, want := Float32ToHalf(f), refToHalf(f); got != want {
			t.Fatalf("Float32ToHalf(%g = %#08x) = %#04x, want %#04x", f, math.Float32bits(f), got, want)
		}
	}
	for h := uint16(0); h < 0x7c00; h++ {
		lo := refHalf(h)
		hi := 65536.0
		if h+1 < 0x7c00 {
			hi = refHalf(h + 1)
		}
		mid := float32((lo + hi) / 2) // exact: halves have 11 significant bits
		for _, f := range []float32{float32(lo), mid, math.Nextafter32(mid, 0), math.Nextafter32(mid, 1e9)} {
			check(f)
			check(-f)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	n := 1 << 20
	if testing.Short() {
		n = 1 << 15
	}
	for range n {
		check(math.Float32frombits(rng.Uint32()))
	}
}

func TestHalfSliceKernels(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{0, 1, 3, 4, 5, 1023} {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(rng.NormFloat64() * 10)
		}
		b := appendHalf([]byte{0xAA}, x)
		if len(b) != 1+2*n || b[0] != 0xAA {
			t.Fatalf("n=%d: appendHalf gave %d bytes", n, len(b))
		}
		got := make([]float32, n)
		decodeHalf(got, b[1:])
		for i := range x {
			if want := HalfToFloat32(Float32ToHalf(x[i])); got[i] != want {
				t.Fatalf("n=%d i=%d: %v, want %v", n, i, got[i], want)
			}
			// Half precision: relative error at most 2^-11 for normals.
			if e := math.Abs(float64(got[i]-x[i])) / math.Abs(float64(x[i])); x[i] != 0 && math.Abs(float64(x[i])) > 0x1p-14 && e > 0x1p-11 {
				t.Fatalf("n=%d i=%d: relative error %g", n, i, e)
			}
		}
	}
}
