package encoding

import (
	"bytes"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// nextVersion returns a base of n values and a next version that moves a
// little from it, as consecutive model versions do.
func nextVersion(n int, seed uint64) (base, next []float32) {
	rng := rand.New(rand.NewPCG(seed, 1))
	base = make([]float32, n)
	next = make([]float32, n)
	for i := range base {
		base[i] = float32(rng.NormFloat64())
		next[i] = base[i] + float32(rng.NormFloat64()*1e-3)
	}
	return base, next
}

// TestApplyEqualsDecode: applying a blob in chunks gives Decode's result
// bit for bit, for every dense codec, delta or full, compressed or not,
// with chunks that end inside an int8 block and inside a byte plane.
func TestApplyEqualsDecode(t *testing.T) {
	const n = 5003 // not a multiple of the block size: a short last block
	base, next := nextVersion(n, 7)
	next[3] = float32(math.Copysign(0, -1))
	next[4] = math.Float32frombits(0x7fc00123) // a NaN payload
	var opts []Options
	for _, c := range []Codec{Float32, Float16, Int8, Float32XOR} {
		for _, z := range []Compressor{NoCompression, Flate} {
			opts = append(opts, Options{Codec: c, Compressor: z, BlockSize: 64})
		}
	}
	for _, o := range opts {
		for _, delta := range []bool{true, false} {
			if !delta && o.Codec == Int8 {
				o.BlockSize = 100 // full: another block size
			}
			var b []float32
			if delta {
				b = base
			}
			x := next
			if o.Codec != Float32XOR {
				x = append([]float32(nil), next...)
				x[4] = 1 // lossy codecs refuse NaN
			}
			blob, err := Encode(x, b, o)
			if err != nil {
				t.Fatalf("%v: %v", o, err)
			}
			want, err := Decode(blob, b)
			if err != nil {
				t.Fatalf("%v: %v", o, err)
			}
			for _, chunk := range []int{1, 7, 30, 1000, n, 0} {
				dst := make([]float32, n)
				if delta {
					copy(dst, base)
				} else {
					for i := range dst {
						dst[i] = 42 // overwritten
					}
				}
				d := Decoder{ApplyChunk: chunk}
				if err := d.Apply(dst, bytes.NewReader(blob), int64(len(blob))); err != nil {
					t.Fatalf("%v delta=%v chunk %d: %v", o, delta, chunk, err)
				}
				for i := range want {
					if math.Float32bits(dst[i]) != math.Float32bits(want[i]) {
						t.Fatalf("%v delta=%v chunk %d: [%d] = %#x, Decode gives %#x", o, delta, chunk, i, math.Float32bits(dst[i]), math.Float32bits(want[i]))
					}
				}
			}
		}
	}
}

// TestApplyRefusesCorrupt: a blob with a changed, missing or extra byte,
// or against the wrong base, is refused with the package's errors.
func TestApplyRefusesCorrupt(t *testing.T) {
	const n = 3000
	base, next := nextVersion(n, 9)
	for _, o := range []Options{LosslessDelta(), {Codec: Int8, Compressor: Flate, BlockSize: 64}, {Codec: Float16}} {
		blob, err := Encode(next, base, o)
		if err != nil {
			t.Fatal(err)
		}
		flip := bytes.Clone(blob)
		flip[len(flip)-len(flip)/3] ^= 0x10
		tests := []struct {
			name string
			blob []byte
			base []float32
			want []error
		}{
			{"flipped", flip, base, []error{ErrCorrupt, ErrHashMismatch}},
			{"truncated", blob[:len(blob)-1], base, []error{ErrCorrupt}},
			{"trailing", append(bytes.Clone(blob), 0), base, []error{ErrCorrupt}},
			{"header", blob[:20], base, []error{ErrCorrupt}},
			{"other base", blob, next, []error{ErrBaseMismatch}},
			{"short base", blob, base[:n-1], []error{ErrBaseMismatch}},
		}
		for _, tt := range tests {
			dst := append([]float32(nil), tt.base...)
			var d Decoder
			err := d.Apply(dst, bytes.NewReader(tt.blob), int64(len(tt.blob)))
			ok := false
			for _, w := range tt.want {
				ok = ok || errors.Is(err, w)
			}
			if !ok {
				t.Errorf("%v %s: %v, want one of %v", o, tt.name, err, tt.want)
			}
		}
	}
}

// TestApplySparseUnsupported: a top-k blob needs its indices whole.
func TestApplySparseUnsupported(t *testing.T) {
	base, next := nextVersion(1000, 3)
	blob, err := Encode(next, base, Options{Codec: Float16, TopK: 0.1})
	if err != nil {
		t.Fatal(err)
	}
	var d Decoder
	if err := d.Apply(base, bytes.NewReader(blob), int64(len(blob))); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("sparse: %v, want ErrUnsupported", err)
	}
}

// TestApplyMemory: applying a lossless delta and an int8 push to a 16 MB
// vector, read from a file, allocates less than a quarter of the vector
// (agent's TestFinishDownloadMemory applies one to a 50 MB model).
func TestApplyMemory(t *testing.T) {
	const n = 16 << 20 / 4
	base, next := nextVersion(n, 11)
	dir := t.TempDir()
	for _, o := range []Options{LosslessDelta(), {Codec: Int8, Compressor: Flate}} {
		blob, err := Encode(next, base, o)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "blob")
		if err := os.WriteFile(path, blob, 0o600); err != nil {
			t.Fatal(err)
		}
		want, err := Decode(blob, base)
		if err != nil {
			t.Fatal(err)
		}
		blob = nil
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		st, _ := f.Stat()
		dst := append([]float32(nil), base...)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		var d Decoder
		err = d.Apply(dst, f, st.Size())
		runtime.ReadMemStats(&after)
		f.Close()
		if err != nil {
			t.Fatalf("%v: %v", o, err)
		}
		if got := after.TotalAlloc - before.TotalAlloc; got > 4*n/4 {
			t.Errorf("%v: applying to %d bytes allocated %d bytes, want under a quarter", o, 4*n, got)
		} else {
			t.Logf("%v: applying to %d bytes allocated %d bytes", o, 4*n, got)
		}
		for i := range want {
			if math.Float32bits(dst[i]) != math.Float32bits(want[i]) {
				t.Fatalf("%v: [%d] differs from Decode", o, i)
			}
		}
	}
}

// sliceReader reads a vector at most max values per call.
type sliceReader struct {
	v   []float32
	max int
}

func (r *sliceReader) ReadFloats(p []float32) (int, error) {
	if len(r.v) == 0 {
		return 0, io.EOF
	}
	k := copy(p[:min(len(p), r.max)], r.v)
	r.v = r.v[k:]
	return k, nil
}

func sliceSource(v []float32) FloatSource {
	return func() (FloatReader, func(), error) { return &sliceReader{v: v, max: 1001}, func() {}, nil }
}

// TestWriteLosslessDeltaEqualsEncode: the delta written from sources, a
// chunk at a time, is Encode's blob byte for byte, and sources of another
// length are refused.
func TestWriteLosslessDeltaEqualsEncode(t *testing.T) {
	for _, n := range []int{0, 1, 5003, 3*streamChunk + 17} {
		tiny := n < 100 // Encode stores such planes raw: only the decoding must agree
		base, next := nextVersion(n, uint64(n))
		want, err := Encode(next, base, LosslessDelta())
		if err != nil {
			t.Fatal(err)
		}
		f, err := os.Create(filepath.Join(t.TempDir(), "delta"))
		if err != nil {
			t.Fatal(err)
		}
		size, err := WriteLosslessDelta(f, n, sliceSource(next), sliceSource(base))
		if err != nil {
			t.Fatalf("%d: %v", n, err)
		}
		got, _ := os.ReadFile(f.Name())
		f.Close()
		if tiny {
			dec, err := Decode(got, base)
			if err != nil || HashParams(dec) != HashParams(next) || size != int64(len(got)) {
				t.Fatalf("%d elements: %v", n, err)
			}
			continue
		}
		if size != int64(len(got)) || !bytes.Equal(got, want) {
			t.Fatalf("%d elements: wrote %d bytes (size %d), Encode gives %d, equal %v", n, len(got), size, len(want), bytes.Equal(got, want))
		}
	}
	base, next := nextVersion(100, 1)
	var sink bytesWriterAt
	for _, tt := range []struct {
		name       string
		next, base []float32
	}{{"short next", next[:99], base}, {"long base", next, append(base, 1)}} {
		if _, err := WriteLosslessDelta(&sink, 100, sliceSource(tt.next), sliceSource(tt.base)); !errors.Is(err, ErrLength) {
			t.Errorf("%s: %v, want ErrLength", tt.name, err)
		}
	}
}

// bytesWriterAt is an in-memory io.WriterAt.
type bytesWriterAt struct{ b []byte }

func (w *bytesWriterAt) WriteAt(p []byte, off int64) (int, error) {
	if end := int(off) + len(p); end > len(w.b) {
		w.b = append(w.b, make([]byte, end-len(w.b))...)
	}
	return copy(w.b[off:], p), nil
}
