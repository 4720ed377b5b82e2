package encoding

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// allOptions is every codec, dense and top-k (Float32XOR is dense only),
// with and without flate.
func allOptions() []Options {
	var out []Options
	for _, c := range []Codec{Float32, Float16, Int8, Float32XOR} {
		for _, k := range []float64{0, 0.05} {
			if k > 0 && c == Float32XOR {
				continue
			}
			for _, z := range []Compressor{NoCompression, Flate} {
				out = append(out, Options{Codec: c, TopK: k, Compressor: z, BlockSize: 64})
			}
		}
	}
	return out
}

// checkValues asserts what each codec promises about the decoded vector got
// of x (the full vector or the delta), given the reconstruction rule.
func checkValues(t *testing.T, opts Options, x, got []float32) {
	t.Helper()
	keep := make([]bool, len(x))
	if opts.TopK > 0 {
		for _, i := range refTopK(x, keepCount(opts.TopK, len(x))) {
			keep[i] = true
		}
	} else {
		for i := range keep {
			keep[i] = true
		}
	}
	// Int8 blocks run over the kept values in index order.
	var kept []float32
	for i, v := range x {
		if keep[i] {
			kept = append(kept, v)
		}
	}
	j := 0
	for i, v := range x {
		if !keep[i] {
			if got[i] != 0 {
				t.Fatalf("%v: x[%d] not kept but decoded %g", opts, i, got[i])
			}
			continue
		}
		switch opts.Codec {
		case Float32XOR:
			if math.Float32bits(got[i]) != math.Float32bits(v) {
				t.Fatalf("%v: x[%d] bits %#x decoded %#x, want the same bits", opts, i, math.Float32bits(v), math.Float32bits(got[i]))
			}
		case Float32:
			if got[i] != v {
				t.Fatalf("%v: x[%d]=%g decoded %g, want exact", opts, i, v, got[i])
			}
		case Float16:
			if want := HalfToFloat32(Float32ToHalf(v)); got[i] != want {
				t.Fatalf("%v: x[%d]=%g decoded %g, want %g", opts, i, v, got[i], want)
			}
		case Int8:
			bs := opts.blockSize()
			blo := j / bs * bs
			var m float64
			for _, w := range kept[blo:min(blo+bs, len(kept))] {
				m = max(m, math.Abs(float64(w)))
			}
			if e := math.Abs(float64(got[i] - v)); e > m/127/2*(1+1e-5) {
				t.Fatalf("%v: x[%d]=%g decoded %g: error %g > scale/2", opts, i, v, got[i], e)
			}
		}
		j++
	}
}

func TestRoundTripFull(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	x := gaussian(rng, 1000, 0.1)
	var e Encoder
	var d Decoder
	for _, opts := range allOptions() {
		t.Run(opts.String(), func(t *testing.T) {
			blob, st, err := e.AppendEncodeStats(nil, x, nil, opts)
			if err != nil {
				t.Fatal(err)
			}
			got, err := d.Decode(nil, blob, nil)
			if err != nil {
				t.Fatal(err)
			}
			checkValues(t, opts, x, got)
			if HashParams(got) != st.ResultHash || st.Size != len(blob) {
				t.Fatalf("stats %+v disagree with the blob", st)
			}
			if want := relErr(x, got); math.Abs(want-st.RelErr) > 1e-12 || st.DeltaRelErr != st.RelErr {
				t.Fatalf("RelErr %g, measured %g", st.RelErr, want)
			}
			h, err := ParseHeader(blob)
			if err != nil || h.Codec != opts.Codec || h.Count != len(x) || h.Delta() || h.Sparse() != (opts.TopK > 0) {
				t.Fatalf("header %+v, %v", h, err)
			}
			// The package-level helpers agree with the reusable types.
			blob2, err := Encode(x, nil, opts)
			if err != nil || !slices.Equal(blob, blob2) {
				t.Fatalf("Encode differs from Encoder.AppendEncode (%v)", err)
			}
			if got2, err := Decode(blob, nil); err != nil || !slices.Equal(got, got2) {
				t.Fatalf("Decode differs (%v)", err)
			}
		})
	}
}

func TestRoundTripDelta(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	base := gaussian(rng, 1000, 0.1)
	params := slices.Clone(base)
	for i := range params {
		params[i] += float32(rng.NormFloat64() * 1e-3)
	}
	delta := make([]float32, len(params))
	for i := range delta {
		delta[i] = params[i] - base[i]
	}
	var e Encoder
	var d Decoder
	for _, opts := range allOptions() {
		t.Run(opts.String(), func(t *testing.T) {
			blob, st, err := e.AppendEncodeStats(nil, params, base, opts)
			if err != nil {
				t.Fatal(err)
			}
			h, err := ParseHeader(blob)
			if err != nil || !h.Delta() || h.BaseHash != HashParams(base) || h.Size() != DeltaHeaderSize {
				t.Fatalf("header %+v, %v", h, err)
			}
			got, err := d.Decode(nil, blob, base)
			if err != nil {
				t.Fatal(err)
			}
			if opts.Codec == Float32XOR {
				// Lossless: the result is params itself, not base + d̂.
				checkValues(t, opts, params, got)
				if HashParams(got) != st.ResultHash || st.RelErr != 0 || st.DeltaRelErr != 0 {
					t.Fatalf("stats %+v for a lossless delta", st)
				}
				return
			}
			// Recover the decoded delta from the result: got = base + d̂.
			dhat := make([]float32, len(got))
			for i := range got {
				dhat[i] = got[i] - base[i]
			}
			// float32 rounding of base + d̂ and back: compare against the
			// codec's own reconstruction instead of bit equality.
			want := make([]float32, len(delta))
			copy(want, e.last)
			for i := range got {
				if r := base[i] + want[i]; got[i] != r {
					t.Fatalf("result[%d] = %g, want base + d̂ = %g", i, got[i], r)
				}
			}
			checkValues(t, opts, delta, want)
			if HashParams(got) != st.ResultHash {
				t.Fatal("result hash differs from Stats")
			}
			if m := relErr(params, got); math.Abs(m-st.RelErr) > 1e-9 {
				t.Fatalf("RelErr %g, measured %g", st.RelErr, m)
			}
			if m := relErr(delta, want); math.Abs(m-st.DeltaRelErr) > 1e-9 {
				t.Fatalf("DeltaRelErr %g, measured %g", st.DeltaRelErr, m)
			}
			_ = dhat
		})
	}
}

func TestDeltaNeedsTheRightBase(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	base := gaussian(rng, 300, 1)
	params := gaussian(rng, 300, 1)
	blob, err := Encode(params, base, Options{Codec: Int8})
	if err != nil {
		t.Fatal(err)
	}
	other := slices.Clone(base)
	other[17] = math.Nextafter32(other[17], 10)
	tests := []struct {
		name string
		base []float32
	}{
		{"nil base", nil},
		{"one ulp off", other},
		{"short base", base[:299]},
		{"long base", append(slices.Clone(base), 0)},
	}
	for _, tt := range tests {
		if _, err := Decode(blob, tt.base); !errors.Is(err, ErrBaseMismatch) {
			t.Errorf("%s: err = %v, want ErrBaseMismatch", tt.name, err)
		}
	}
	if _, err := Decode(blob, base); err != nil {
		t.Errorf("right base: %v", err)
	}
	if _, err := Encode(params, base[:10], Options{}); !errors.Is(err, ErrLength) {
		t.Errorf("encode with short base: %v, want ErrLength", err)
	}
}

func TestHashMismatch(t *testing.T) {
	x := gaussian(rand.New(rand.NewPCG(15, 16)), 100, 1)
	for _, opts := range allOptions() {
		blob, err := Encode(x, nil, opts)
		if err != nil {
			t.Fatal(err)
		}
		blob[24+5] ^= 0x40 // inside ResultHash
		if _, err := Decode(blob, nil); !errors.Is(err, ErrHashMismatch) {
			t.Errorf("%v: err = %v, want ErrHashMismatch", opts, err)
		}
	}
	// A changed value in a raw float32 body is caught by the hash too.
	blob, _ := Encode(x, nil, Options{})
	blob[HeaderSize+8] ^= 1
	if _, err := Decode(blob, nil); !errors.Is(err, ErrHashMismatch) {
		t.Errorf("flipped body bit: err = %v, want ErrHashMismatch", err)
	}
}

// TestCorruptionNeverYieldsWrongModel flips bits at every byte of blobs of
// every codec: decoding either fails or yields exactly the original result
// (e.g. a flipped scale of an all-zero int8 block changes nothing). Every
// truncation and any trailing byte fail.
func TestCorruptionNeverYieldsWrongModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 18))
	base := gaussian(rng, 97, 1)
	x := gaussian(rng, 97, 1)
	// A corrupted count can ask for up to MaxElements of (sparse) output:
	// keep it near the real size, as a receiver that knows its model does.
	d := Decoder{MaxElements: 1 << 10}
	for _, withBase := range []bool{false, true} {
		for _, opts := range allOptions() {
			var b []float32
			if withBase {
				b = base
			}
			blob, err := Encode(x, b, opts)
			if err != nil {
				t.Fatal(err)
			}
			want, err := d.Decode(nil, blob, b)
			if err != nil {
				t.Fatal(err)
			}
			wantHash := HashParams(want)
			failures := 0
			for i := range blob {
				for _, mask := range []byte{0x01, 0x80, 0xff} {
					c := slices.Clone(blob)
					c[i] ^= mask
					got, err := d.Decode(nil, c, b)
					if err == nil && HashParams(got) != wantHash {
						t.Fatalf("%v base=%v: byte %d ^ %#x decoded to a different model", opts, withBase, i, mask)
					}
					if err != nil {
						failures++
					}
				}
			}
			if failures < 3*len(blob)*9/10 {
				t.Errorf("%v: only %d of %d corruptions detected", opts, failures, 3*len(blob))
			}
			for n := range blob {
				if _, err := d.Decode(nil, blob[:n], b); err == nil {
					t.Fatalf("%v: truncation to %d bytes accepted", opts, n)
				}
			}
			if _, err := d.Decode(nil, append(slices.Clone(blob), 0), b); err == nil {
				t.Fatalf("%v: trailing byte accepted", opts)
			}
		}
	}
}

func TestDecodeLimits(t *testing.T) {
	x := make([]float32, 5000)
	blob, err := Encode(x, nil, Options{Codec: Int8, TopK: 0.001})
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

	// A flate body announcing more than DEFLATE can expand to is refused
	// before anything is allocated.
	h := Header{Version: Version, Codec: Float32, Compressor: Flate, Count: 1 << 20, Kept: 1 << 20, RawLen: 4 << 20}
	bomb := appendHeader(nil, &h)
	bomb = append(bomb, make([]byte, 100)...)
	if _, err := Decode(bomb, nil); !errors.Is(err, ErrCorrupt) {
		t.Errorf("flate bomb: err = %v, want ErrCorrupt", err)
	}
	// Dense sizes must agree with the header.
	h = Header{Version: Version, Codec: Float16, Count: 10, Kept: 10, RawLen: 21}
	if _, err := ParseHeader(appendHeader(nil, &h)); !errors.Is(err, ErrCorrupt) {
		t.Errorf("inconsistent RawLen: err = %v, want ErrCorrupt", err)
	}
	h = Header{Version: 2, Codec: Float16}
	if _, err := ParseHeader(appendHeader(nil, &h)); !errors.Is(err, ErrUnsupported) {
		t.Errorf("version 2: err = %v, want ErrUnsupported", err)
	}
}

func TestEncodeErrors(t *testing.T) {
	nan := []float32{1, float32(math.NaN())}
	if _, err := Encode(nan, nil, Options{Codec: Int8}); !errors.Is(err, ErrNonFinite) {
		t.Errorf("int8 NaN: err = %v, want ErrNonFinite", err)
	}
	// Float codecs carry NaN and Inf through.
	for _, c := range []Codec{Float32, Float16} {
		blob, err := Encode(nan, nil, Options{Codec: c})
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(blob, nil)
		if err != nil || !math.IsNaN(float64(got[1])) {
			t.Errorf("%v NaN round trip: %v, %v", c, got, err)
		}
	}
	bad := []Options{
		{Codec: Float32XOR + 1},
		{Codec: Float32XOR, TopK: 0.01},
		{Codec: Float32XOR, TopK: 1},
		{TopK: -0.1},
		{TopK: 1.5},
		{TopK: math.NaN()},
		{BlockSize: -1},
		{BlockSize: MaxBlockSize + 1},
		{Compressor: 2},
		{Compressor: Flate, Level: 10},
		{Compressor: Flate, Level: -1},
	}
	for _, o := range bad {
		if _, err := Encode([]float32{1}, nil, o); !errors.Is(err, ErrOptions) {
			t.Errorf("%+v: err = %v, want ErrOptions", o, err)
		}
	}
}

func TestEmptyVector(t *testing.T) {
	for _, opts := range allOptions() {
		blob, err := Encode(nil, nil, opts)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(blob, nil)
		if err != nil || len(got) != 0 {
			t.Errorf("%v: %v, %v", opts, got, err)
		}
	}
}

func TestChoose(t *testing.T) {
	rng := rand.New(rand.NewPCG(19, 20))
	base := gaussian(rng, 8000, 0.05)
	params := slices.Clone(base)
	for i := range params {
		params[i] += float32(rng.NormFloat64() * 1e-3)
	}
	candidates := []Options{
		{Codec: Float32, Compressor: Flate},
		{Codec: Float16},
		{Codec: Int8},
		{Codec: Int8, TopK: 0.01, Compressor: Flate},
	}
	// Sizes and errors of every candidate, measured one by one.
	var e Encoder
	sizes := make([]int, len(candidates))
	errs := make([]float64, len(candidates))
	for i, o := range candidates {
		_, st, err := e.AppendEncodeStats(nil, params, base, o)
		if err != nil {
			t.Fatal(err)
		}
		sizes[i], errs[i] = st.Size, st.RelErr
	}
	for _, maxErr := range []float64{0, 1e-4, 1e-3, 0.05, 1} {
		t.Run(fmt.Sprint(maxErr), func(t *testing.T) {
			want := -1
			for i := range candidates {
				if errs[i] <= maxErr && (want < 0 || sizes[i] < sizes[want]) {
					want = i
				}
			}
			blob, c, err := e.Choose([]byte("prefix"), params, base, candidates, maxErr)
			if want < 0 {
				if !errors.Is(err, ErrNoCandidate) {
					t.Fatalf("err = %v, want ErrNoCandidate", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Index != want || c.Stats.Size != sizes[want] || len(blob) != 6+sizes[want] || string(blob[:6]) != "prefix" {
				t.Fatalf("chose %d (%d bytes, blob %d), want %d (%d bytes)", c.Index, c.Stats.Size, len(blob), want, sizes[want])
			}
			got, err := Decode(blob[6:], base)
			if err != nil {
				t.Fatal(err)
			}
			if r := relErr(params, got); r > maxErr {
				t.Fatalf("decoded error %g > allowed %g", r, maxErr)
			}
		})
	}
	// Int8 cannot carry NaN: Choose falls back to a float candidate.
	nan := slices.Clone(params)
	nan[3] = float32(math.NaN())
	if _, c, err := Choose(nan, nil, []Options{{Codec: Int8}, {Codec: Float16}}, math.Inf(1)); err != nil || c.Index != 1 {
		t.Errorf("NaN: chose %d, %v; want 1", c.Index, err)
	}
}

// TestHotPathsDoNotAllocate is the allocation budget: once warmed up, an
// Encoder appending into a reused dst and a Decoder decoding into a reused
// dst allocate nothing. The exception is inflating: compress/flate's reader
// allocates its Huffman link tables per dynamic block, a few small objects
// per call that do not grow with the vector beyond one per block.
func TestHotPathsDoNotAllocate(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	base := gaussian(rng, 3000, 1)
	x := gaussian(rng, 3000, 1)
	for _, opts := range allOptions() {
		for _, b := range [][]float32{nil, base} {
			var e Encoder
			var d Decoder
			blob, err := e.AppendEncode(nil, x, b, opts)
			if err != nil {
				t.Fatal(err)
			}
			out, err := d.Decode(nil, blob, b)
			if err != nil {
				t.Fatal(err)
			}
			if a := testing.AllocsPerRun(3, func() { blob, _ = e.AppendEncode(blob[:0], x, b, opts) }); a != 0 {
				t.Errorf("%v delta=%v: AppendEncode allocates %v times", opts, b != nil, a)
			}
			budget := 0.0
			if opts.Compressor == Flate {
				budget = 64
			}
			if a := testing.AllocsPerRun(3, func() { out, _ = d.Decode(out, blob, b) }); a > budget {
				t.Errorf("%v delta=%v: Decode allocates %v times", opts, b != nil, a)
			}
		}
	}
}

// TestStreamingHashMatchesHashParams: the hash a blob's encoder computes
// in pieces is HashParams, the model registry's name for a version.
func TestStreamingHashMatchesHashParams(t *testing.T) {
	for _, n := range []int{0, 1, 1000, 4097} {
		x := gaussian(rand.New(rand.NewPCG(uint64(n), 1)), n, 1)
		var h floatHasher
		h.reset()
		h.write(x)
		if h.sum() != HashParams(x) {
			t.Errorf("n=%d: streaming hash differs", n)
		}
		// The portable (big-endian) path agrees with the native one.
		if b := appendFloat32Generic(nil, x); sha256.Sum256(b) != HashParams(x) {
			t.Errorf("n=%d: generic little-endian bytes hash differently", n)
		}
		got := make([]float32, n)
		decodeFloat32Generic(got, appendFloat32Generic(nil, x))
		if !slices.Equal(got, x) {
			t.Errorf("n=%d: generic float32 round trip differs", n)
		}
	}
}

// TestIncompressibleBodyIsStored: flate never makes a blob bigger than the
// uncompressed one; the header says what was done.
func TestIncompressibleBodyIsStored(t *testing.T) {
	rng := rand.New(rand.NewPCG(27, 28))
	x := make([]float32, 4096)
	for i := range x {
		x[i] = float32(rng.Float64()*2 - 1) // uniform: int8 codes near 8 bits of entropy
	}
	raw, err := Encode(x, nil, Options{Codec: Int8})
	if err != nil {
		t.Fatal(err)
	}
	z, err := Encode(x, nil, Options{Codec: Int8, Compressor: Flate})
	if err != nil {
		t.Fatal(err)
	}
	h, _ := ParseHeader(z)
	if len(z) > len(raw) || (h.Compressor == NoCompression) != (len(z) == len(raw)) {
		t.Fatalf("flate blob %d bytes (%v), raw %d", len(z), h.Compressor, len(raw))
	}
	if _, err := Decode(z, nil); err != nil {
		t.Fatal(err)
	}
	// A compressible body keeps flate.
	z, _ = Encode(make([]float32, 4096), nil, Options{Codec: Int8, Compressor: Flate})
	if h, _ := ParseHeader(z); h.Compressor != Flate || len(z) >= len(raw) {
		t.Fatalf("zeros: %v, %d bytes", h.Compressor, len(z))
	}
}
