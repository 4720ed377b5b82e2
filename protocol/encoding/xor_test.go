package encoding

import (
	"compress/flate"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/fedge/fedge/internal/testutil"
	"github.com/fedge/fedge/tensor"
	"github.com/fedge/fedge/tensor/data"
)

// specialBits are float32 bit patterns a lossless codec must carry: signed
// zeros, infinities, NaNs with payloads (quiet, signaling, negative),
// subnormals, the extremes of the normal range.
var specialBits = []uint32{
	0x00000000, 0x80000000, // ±0
	0x7f800000, 0xff800000, // ±Inf
	0x7fc00000, 0x7f800001, 0xffc12345, 0x7fbfffff, // NaNs
	0x00000001, 0x807fffff, 0x00400000, // subnormals
	0x00800000, 0x7f7fffff, 0xff7fffff, // min normal, ±max
	0x3f800000, 0xbdcccccd, // 1, -0.1
}

// specialVector returns n values: a special pattern every third element
// (rotated by shift, so a base and params differ) and Gaussian values around
// them.
func specialVector(rng *rand.Rand, n, shift int) []float32 {
	x := gaussian(rng, n, 0.05)
	for i := 0; i < n; i += 3 {
		x[i] = math.Float32frombits(specialBits[(i/3+shift)%len(specialBits)])
	}
	return x
}

// sameBits reports whether a and b hold the same bit patterns.
func sameBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

func TestXORRoundTripBitExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	// One Encoder and Decoder for every case: buffers are reused across
	// lengths, larger and smaller.
	var e Encoder
	var d Decoder
	var out []float32
	for _, n := range []int{0, 1, 3, 4, 1000, 4097, 8191, 3} {
		params := specialVector(rng, n, 0)
		for _, kind := range []string{"full", "delta-near", "delta-specials"} {
			var base []float32
			switch kind {
			case "delta-near": // a training step: small changes
				base = slices.Clone(params)
				for i := range base {
					base[i] += float32(rng.NormFloat64() * 1e-3)
				}
			case "delta-specials": // specials under specials, NaN under NaN
				base = specialVector(rng, n, 5)
			}
			for _, z := range []Compressor{NoCompression, Flate} {
				opts := Options{Codec: Float32XOR, Compressor: z}
				t.Run(fmt.Sprintf("n%d/%s/%v", n, kind, z), func(t *testing.T) {
					blob, st, err := e.AppendEncodeStats(nil, params, base, opts)
					if err != nil {
						t.Fatal(err)
					}
					h, err := ParseHeader(blob)
					if err != nil {
						t.Fatal(err)
					}
					if h.Codec != Float32XOR || h.Count != n || h.Kept != n || h.BlockSize != 0 || h.RawLen != 4*n || h.Sparse() || h.Delta() != (base != nil) {
						t.Fatalf("header %+v", h)
					}
					if h.ResultHash != HashParams(params) || st.ResultHash != h.ResultHash || st.Size != len(blob) {
						t.Fatalf("result hash is not HashParams(params)")
					}
					if st.RelErr != 0 || st.DeltaRelErr != 0 {
						t.Fatalf("RelErr %g DeltaRelErr %g, want 0", st.RelErr, st.DeltaRelErr)
					}
					if out, err = d.Decode(out, blob, base); err != nil {
						t.Fatal(err)
					}
					if !sameBits(out, params) {
						t.Fatal("decoded bits differ from params")
					}
					// The one-shot helpers produce and accept the same blob.
					blob2, err := Encode(params, base, opts)
					if err != nil || !slices.Equal(blob, blob2) {
						t.Fatalf("Encode differs from Encoder.AppendEncode (%v)", err)
					}
					if got, err := Decode(blob, base); err != nil || !sameBits(got, params) {
						t.Fatalf("Decode: %v", err)
					}
				})
			}
		}
	}
}

// TestXORBodyLayout pins the body format: byte planes of the (XORed)
// little-endian bit patterns.
func TestXORBodyLayout(t *testing.T) {
	p := []float32{math.Float32frombits(0x04030201), math.Float32frombits(0x08070605), math.Float32frombits(0x0c0b0a09)}
	base := []float32{math.Float32frombits(0x04030201), math.Float32frombits(0x00000000), math.Float32frombits(0xff00ff00)}
	tests := []struct {
		name string
		base []float32
		body []byte
	}{
		{"full", nil, []byte{0x01, 0x05, 0x09, 0x02, 0x06, 0x0a, 0x03, 0x07, 0x0b, 0x04, 0x08, 0x0c}},
		{"delta", base, []byte{0x00, 0x05, 0x09, 0x00, 0x06, 0x0a ^ 0xff, 0x00, 0x07, 0x0b, 0x00, 0x08, 0x0c ^ 0xff}},
	}
	for _, tt := range tests {
		blob, err := Encode(p, tt.base, Options{Codec: Float32XOR})
		if err != nil {
			t.Fatal(err)
		}
		h, _ := ParseHeader(blob)
		if got := blob[h.Size():]; !slices.Equal(got, tt.body) {
			t.Errorf("%s: body % x, want % x", tt.name, got, tt.body)
		}
	}
}

// TestXORIsLosslessWhereFloat32DeltaIsNot: the reason for the codec. A
// float32 delta rounds base + (params − base) and loses -0 and NaN payloads;
// the XOR delta returns params bit for bit.
func TestXORIsLosslessWhereFloat32DeltaIsNot(t *testing.T) {
	rng := rand.New(rand.NewPCG(33, 34))
	base := gaussian(rng, 4000, 0.05)
	params := slices.Clone(base)
	for i := range params {
		params[i] += float32(rng.NormFloat64() * 1e-3)
	}
	// Where float32 arithmetic cannot return params: -0 over +0 (-0 − 0 + 0
	// is +0), a weight that falls from 0.3 to 1e-9 (below half an ulp of
	// 0.3), a NaN over a NaN base (the sum keeps the base's payload), a
	// finite value over an infinite base (Inf − Inf is NaN). Everywhere
	// else a small float32 delta happens to round back exactly.
	params[7], base[7] = float32(math.Copysign(0, -1)), 0
	params[8], base[8] = 1e-9, 0.3
	params[9], base[9] = math.Float32frombits(0x7fc0dead), math.Float32frombits(0x7fc00001)
	params[10], base[10] = 1, float32(math.Inf(1))
	for _, c := range []Codec{Float32, Float32XOR} {
		blob, err := Encode(params, base, Options{Codec: c, Compressor: Flate})
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(blob, base)
		if err != nil {
			t.Fatal(err)
		}
		differ := 0
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(params[i]) {
				differ++
			}
		}
		if c.Lossless() != (differ == 0) {
			t.Errorf("%v (lossless %v): %d of %d values differ in their bits", c, c.Lossless(), differ, len(got))
		}
		if c == Float32 && differ != 4 {
			t.Errorf("float32 delta: %d values differ, want the 4 planted ones", differ)
		}
	}
}

func TestXORCorruption(t *testing.T) {
	rng := rand.New(rand.NewPCG(35, 36))
	base := gaussian(rng, 500, 0.05)
	params := slices.Clone(base)
	for i := range params {
		params[i] += float32(rng.NormFloat64() * 1e-3)
	}
	raw, err := Encode(params, base, Options{Codec: Float32XOR})
	if err != nil {
		t.Fatal(err)
	}
	z, err := Encode(params, base, LosslessDelta())
	if err != nil {
		t.Fatal(err)
	}
	if h, _ := ParseHeader(z); h.Compressor != Flate {
		t.Fatalf("a near delta did not compress: %v", h.Compressor)
	}
	offBase := slices.Clone(base)
	offBase[42] = math.Nextafter32(offBase[42], 1)
	// rewrite patches a header field of a clone of raw.
	rewrite := func(f func(h *Header)) []byte {
		h, err := ParseHeader(raw)
		if err != nil {
			t.Fatal(err)
		}
		f(&h)
		return append(appendHeader(nil, &h), raw[h.Size():]...)
	}
	flip := func(blob []byte, i int, mask byte) []byte {
		c := slices.Clone(blob)
		c[i] ^= mask
		return c
	}
	n := len(params)
	tests := []struct {
		name string
		blob []byte
		base []float32
		want error
	}{
		{"no base", raw, nil, ErrBaseMismatch},
		{"base one ulp off", raw, offBase, ErrBaseMismatch},
		{"short base", raw, base[:n-1], ErrBaseMismatch},
		{"params as base", raw, params, ErrBaseMismatch},
		{"flate, base one ulp off", z, offBase, ErrBaseMismatch},
		{"plane 0 bit", flip(raw, DeltaHeaderSize+3, 0x01), base, ErrHashMismatch},
		{"plane 1 bit", flip(raw, DeltaHeaderSize+n+3, 0x10), base, ErrHashMismatch},
		{"plane 2 bit", flip(raw, DeltaHeaderSize+2*n+3, 0x80), base, ErrHashMismatch},
		{"plane 3 bit", flip(raw, DeltaHeaderSize+3*n+3, 0x80), base, ErrHashMismatch},
		{"result hash", flip(raw, 24, 0x01), base, ErrHashMismatch},
		{"truncated body", raw[:len(raw)-1], base, ErrCorrupt},
		{"trailing byte", append(slices.Clone(raw), 0), base, ErrCorrupt},
		{"flate stream cut", z[:len(z)-3], base, ErrCorrupt},
		{"body length not 4n", rewrite(func(h *Header) { h.RawLen++ }), base, ErrCorrupt},
		{"block size", rewrite(func(h *Header) { h.BlockSize = 64 }), base, ErrCorrupt},
		{"sparse flag", rewrite(func(h *Header) { h.Flags |= FlagSparse }), base, ErrUnsupported},
		{"unknown codec", rewrite(func(h *Header) { h.Codec = Float32XOR + 1 }), base, ErrUnsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode(tt.blob, tt.base)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if len(got) != 0 {
				t.Fatalf("%d values returned with an error", len(got))
			}
		})
	}
	// Every corruption of the compressed blob fails or yields params.
	for i := range z {
		got, err := Decode(flip(z, i, 0xff), base)
		if err == nil && !sameBits(got, params) {
			t.Fatalf("byte %d flipped: decoded a different model", i)
		}
	}
}

func TestXORRejectsTopK(t *testing.T) {
	x := []float32{1, 2, 3}
	o := Options{Codec: Float32XOR, TopK: 0.5, Compressor: Flate}
	if err := o.Validate(); !errors.Is(err, ErrOptions) {
		t.Errorf("Validate: %v, want ErrOptions", err)
	}
	if _, err := Encode(x, nil, o); !errors.Is(err, ErrOptions) {
		t.Errorf("Encode: %v, want ErrOptions", err)
	}
	if _, _, err := Choose(x, nil, []Options{{Codec: Float32}, o}, 1); !errors.Is(err, ErrOptions) {
		t.Errorf("Choose: %v, want ErrOptions", err)
	}
	var e Encoder
	var f ErrorFeedback
	if _, err := f.AppendEncode(nil, &e, x, nil, o); !errors.Is(err, ErrOptions) {
		t.Errorf("ErrorFeedback: %v, want ErrOptions", err)
	}
	// Stochastic and Seed mean nothing to the codec: the blob is the same.
	a, err1 := Encode(x, nil, Options{Codec: Float32XOR})
	b, err2 := Encode(x, nil, Options{Codec: Float32XOR, Stochastic: true, Seed: 9, BlockSize: 128})
	if err1 != nil || err2 != nil || !slices.Equal(a, b) {
		t.Errorf("Stochastic/BlockSize change a Float32XOR blob (%v, %v)", err1, err2)
	}
}

func TestXORDecodeLimits(t *testing.T) {
	x := make([]float32, 5000)
	blob, err := Encode(x, nil, LosslessDelta())
	if err != nil {
		t.Fatal(err)
	}
	d := Decoder{MaxElements: 4999}
	if _, err := d.Decode(nil, blob, nil); !errors.Is(err, ErrTooLarge) {
		t.Errorf("over MaxElements: err = %v, want ErrTooLarge", err)
	}
	d.MaxElements = 5000
	if _, err := d.Decode(nil, blob, nil); err != nil {
		t.Errorf("at MaxElements: %v", err)
	}
	// An announced body DEFLATE cannot reach is refused before allocating.
	h := Header{Version: Version, Codec: Float32XOR, Compressor: Flate, Count: 1 << 20, Kept: 1 << 20, RawLen: 4 << 20}
	bomb := append(appendHeader(nil, &h), make([]byte, 100)...)
	if _, err := Decode(bomb, nil); !errors.Is(err, ErrCorrupt) {
		t.Errorf("flate bomb: err = %v, want ErrCorrupt", err)
	}
}

func TestXORChoose(t *testing.T) {
	rng := rand.New(rand.NewPCG(37, 38))
	base := gaussian(rng, 8000, 0.05)
	params := slices.Clone(base)
	for i := range params {
		params[i] += float32(rng.NormFloat64() * 1e-3)
	}
	base[100], params[100] = 0.3, 1e-9 // a float32 delta cannot carry this
	candidates := []Options{
		{Codec: Float32, Compressor: Flate},
		LosslessDelta(),
		{Codec: Int8, TopK: 0.01, Compressor: Flate},
	}
	var e Encoder
	_, f32, err := e.AppendEncodeStats(nil, params, base, candidates[0])
	if err != nil {
		t.Fatal(err)
	}
	if f32.RelErr == 0 {
		t.Fatal("the float32 delta came out exact: the test would prove nothing")
	}
	// Only the lossless candidate has zero error.
	blob, c, err := e.Choose(nil, params, base, candidates, 0)
	if err != nil {
		t.Fatal(err)
	}
	if c.Index != 1 || c.Stats.RelErr != 0 || c.Stats.DeltaRelErr != 0 || c.Stats.Size != len(blob) {
		t.Fatalf("chose %+v", c)
	}
	if got, err := Decode(blob, base); err != nil || !sameBits(got, params) {
		t.Fatalf("chosen blob does not decode to params (%v)", err)
	}
	// Allowed any error, the far smaller top-k wins.
	if _, c, err := e.Choose(nil, params, base, candidates, 1); err != nil || c.Index != 2 {
		t.Fatalf("max error 1: chose %d, %v", c.Index, err)
	}
	// NaN: int8 drops out, and the XOR candidate is still exact.
	nan := slices.Clone(params)
	nan[5] = math.Float32frombits(0xffc0beef)
	if _, c, err := Choose(nan, base, []Options{{Codec: Int8}, LosslessDelta()}, 0); err != nil || c.Index != 1 {
		t.Fatalf("NaN: chose %d, %v", c.Index, err)
	}
}

// TestXORErrorFeedback: a lossless codec keeps a zero residual zero (and the
// result exact); after a lossy round it sends update + residual, leaving
// only float32 rounding behind.
func TestXORErrorFeedback(t *testing.T) {
	const n = 3000
	rng := rand.New(rand.NewPCG(39, 40))
	base := specialVector(rng, n, 2)
	var e Encoder
	var d Decoder
	var ef ErrorFeedback
	for round := range 3 {
		params := slices.Clone(base)
		for i := range params {
			params[i] += float32(rng.NormFloat64() * 1e-3)
		}
		params[3] = float32(math.Copysign(0, -1))
		blob, err := ef.AppendEncode(nil, &e, params, base, LosslessDelta())
		if err != nil {
			t.Fatal(err)
		}
		got, err := d.Decode(nil, blob, base)
		if err != nil || !sameBits(got, params) {
			t.Fatalf("round %d: result differs from params (%v)", round, err)
		}
		if !sameBits(ef.Residual(), make([]float32, n)) {
			t.Fatalf("round %d: residual is not +0 everywhere", round)
		}
	}

	// A lossy round leaves a residual; the lossless round then carries it.
	base = gaussian(rng, n, 0.05)
	params := slices.Clone(base)
	for i := range params {
		params[i] += float32(rng.NormFloat64() * 1e-3)
	}
	if _, err := ef.AppendEncode(nil, &e, params, base, Options{Codec: Int8, TopK: 0.01}); err != nil {
		t.Fatal(err)
	}
	before := slices.Clone(ef.Residual())
	if relErr(before, make([]float32, n)) == 0 {
		t.Fatal("top-k left no residual")
	}
	blob, err := ef.AppendEncode(nil, &e, params, base, LosslessDelta())
	if err != nil {
		t.Fatal(err)
	}
	got, err := d.Decode(nil, blob, base)
	if err != nil {
		t.Fatal(err)
	}
	after := ef.Residual()
	for i := range got {
		want := params[i] + before[i]
		if before[i] == 0 {
			want = params[i]
		}
		if math.Float32bits(got[i]) != math.Float32bits(want) {
			t.Fatalf("x[%d] = %g, want params + residual = %g", i, got[i], want)
		}
		// What is left is the rounding of a few float32 operations on
		// values of the size of params, base and the result.
		mag := max(math.Abs(float64(params[i])), math.Abs(float64(base[i])), math.Abs(float64(got[i])))
		if math.Abs(float64(after[i])) > 4*0x1p-23*mag {
			t.Fatalf("residual[%d] = %g after a lossless round (was %g)", i, after[i], before[i])
		}
	}

	// A full encoding carries everything: the residual becomes zero.
	ef.Reset()
	u := gaussian(rng, n, 1e-3)
	if _, err := ef.AppendEncode(nil, &e, u, nil, Options{Codec: Float16}); err != nil {
		t.Fatal(err)
	}
	if _, err := ef.AppendEncode(nil, &e, u, nil, LosslessDelta()); err != nil {
		t.Fatal(err)
	}
	if !sameBits(ef.Residual(), make([]float32, n)) {
		t.Fatal("full lossless encoding left a residual")
	}
}

func TestLosslessDeltaOptions(t *testing.T) {
	o := LosslessDelta()
	if o != (Options{Codec: Float32XOR, Compressor: Flate}) || o.Validate() != nil || o.String() != "float32-xor+flate" {
		t.Fatalf("LosslessDelta() = %+v (%v)", o, o)
	}
	for c := Float32; c <= Float32XOR+1; c++ {
		if c.Lossless() != (c == Float32XOR) {
			t.Errorf("%v.Lossless() = %v", c, c.Lossless())
		}
	}
	// The level is LosslessFlateLevel whatever the body size: above
	// FlateLevelThreshold the other codecs switch to LargeBodyFlateLevel.
	rng := rand.New(rand.NewPCG(41, 42))
	base := gaussian(rng, FlateLevelThreshold/4+1000, 0.05)
	params := slices.Clone(base)
	for i := range params {
		params[i] += float32(rng.NormFloat64() * 1e-3)
	}
	var e Encoder
	def, err := e.AppendEncode(nil, params, base, o)
	if err != nil {
		t.Fatal(err)
	}
	for _, lvl := range []int{LosslessFlateLevel, LargeBodyFlateLevel} {
		o.Level = lvl
		b, err := e.AppendEncode(nil, params, base, o)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Equal(def, b) != (lvl == LosslessFlateLevel) {
			t.Errorf("default level blob equal to level %d: %v", lvl, slices.Equal(def, b))
		}
	}
}

func TestIsBlob(t *testing.T) {
	blob, err := Encode([]float32{1}, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	spec, err := tensor.NamedSpec("2nn")
	if err != nil {
		t.Fatal(err)
	}
	m, err := tensor.NewModel(spec, 1)
	if err != nil {
		t.Fatal(err)
	}
	file, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		b    []byte
		want bool
	}{
		{"blob", blob, true},
		{"header only", blob[:4], true},
		{"model file", file, false},
		{"short", blob[:3], false},
		{"empty", nil, false},
	}
	for _, tt := range tests {
		if got := IsBlob(tt.b); got != tt.want {
			t.Errorf("%s: IsBlob = %v", tt.name, got)
		}
	}
}

// TestLosslessDeltaSize: on realistic deltas the XOR blob is much smaller
// than the only other lossless choice for a push, float32 + flate of the
// full params, and than a full XOR encoding (what the delta adds).
func TestLosslessDeltaSize(t *testing.T) {
	tests := []struct {
		name string
		// maxShare is the largest allowed size of the delta relative to
		// float32 + flate of the full params (measured: synthetic 0.76,
		// MNIST 2nn 0.59).
		maxShare float64
		vectors  func(t *testing.T) (base, next []float32)
	}{
		{"synthetic", 0.80, func(t *testing.T) ([]float32, []float32) {
			rng := rand.New(rand.NewPCG(43, 44))
			base := gaussian(rng, params2NN, 0.05)
			next := slices.Clone(base)
			for i := range next {
				next[i] += float32(rng.NormFloat64() * 1e-3)
			}
			return base, next
		}},
		{"mnist-2nn", 0.66, func(t *testing.T) ([]float32, []float32) {
			dir := testutil.MNISTDir(t)
			mnist, _, err := data.LoadMNIST(dir)
			if err != nil {
				t.Fatal(err)
			}
			return realRound(t, "2nn", mnist)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base, next := tt.vectors(t)
			var e Encoder
			full, err := e.AppendEncode(nil, next, nil, Options{Codec: Float32, Compressor: Flate})
			if err != nil {
				t.Fatal(err)
			}
			fullXOR, err := e.AppendEncode(nil, next, nil, LosslessDelta())
			if err != nil {
				t.Fatal(err)
			}
			delta, err := e.AppendEncode(nil, next, base, LosslessDelta())
			if err != nil {
				t.Fatal(err)
			}
			got, err := Decode(delta, base)
			if err != nil || !sameBits(got, next) {
				t.Fatalf("delta does not decode to next (%v)", err)
			}
			share := float64(len(delta)) / float64(len(full))
			t.Logf("raw %d, float32+flate %d, float32-xor+flate full %d, delta %d (%.1f%% of raw, %.2f of float32+flate)",
				4*len(next), len(full), len(fullXOR), len(delta), 100*float64(len(delta))/float64(4*len(next)), share)
			if share > tt.maxShare {
				t.Errorf("delta is %.3f of float32+flate, want at most %.2f", share, tt.maxShare)
			}
			if len(delta) >= len(fullXOR)*9/10 {
				t.Errorf("delta %d bytes, full XOR %d: the base saves under 10%%", len(delta), len(fullXOR))
			}
		})
	}
}

// TestXORLevelsOrdered guards LosslessFlateLevel's premise on a small
// realistic delta: a higher level is not larger.
func TestXORLevelsOrdered(t *testing.T) {
	rng := rand.New(rand.NewPCG(45, 46))
	base := gaussian(rng, 20000, 0.05)
	next := slices.Clone(base)
	for i := range next {
		next[i] += float32(rng.NormFloat64() * 1e-3)
	}
	var e Encoder
	prev := math.MaxInt
	for _, lvl := range []int{flate.HuffmanOnly, flate.BestSpeed, LosslessFlateLevel, flate.BestCompression} {
		b, err := e.AppendEncode(nil, next, base, Options{Codec: Float32XOR, Compressor: Flate, Level: lvl})
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > prev {
			t.Errorf("level %d: %d bytes, more than the level before (%d)", lvl, len(b), prev)
		}
		prev = len(b)
	}
}

// floatsFromBytes reads little-endian float32 bit patterns from b (a
// trailing partial element is dropped).
func floatsFromBytes(b []byte) []float32 {
	x := make([]float32, len(b)/4)
	decodeFloat32Generic(x, b[:4*len(x)])
	return x
}

// FuzzXORRoundTrip: any bit patterns, as params and as a base of the same
// length, come back bit for bit, full and delta, raw and deflated.
func FuzzXORRoundTrip(f *testing.F) {
	var special []byte
	for _, w := range specialBits {
		special = append(special, byte(w), byte(w>>8), byte(w>>16), byte(w>>24))
	}
	f.Add(special, special[4:]) // bases shifted by one element
	f.Add([]byte{}, []byte{})
	f.Add([]byte{0, 0, 0, 0x80}, []byte{0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, p, b []byte) {
		params := floatsFromBytes(p)
		other := floatsFromBytes(b)
		base := make([]float32, len(params))
		for i := range base {
			if len(other) > 0 {
				base[i] = other[i%len(other)]
			}
		}
		for _, bs := range [][]float32{nil, base} {
			for _, opts := range []Options{{Codec: Float32XOR}, LosslessDelta()} {
				blob, err := Encode(params, bs, opts)
				if err != nil {
					t.Fatal(err)
				}
				got, err := Decode(blob, bs)
				if err != nil {
					t.Fatal(err)
				}
				if !sameBits(got, params) {
					t.Fatalf("%v delta=%v: decoded bits differ", opts, bs != nil)
				}
			}
		}
	})
}
