package encoding

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

var updateSeeds = flag.Bool("update", false, "rewrite testdata/fuzz/FuzzDecode seeds")

// fuzzBase is the base every delta seed was encoded against.
func fuzzBase() []float32 {
	b := make([]float32, 2048)
	for i := range b {
		b[i] = float32(i%4) / 4
	}
	return b
}

// seedBlobs is one blob per codec × sparse × compressor × delta.
func seedBlobs(t testing.TB) map[string][]byte {
	rng := rand.New(rand.NewPCG(101, 102))
	base := fuzzBase()
	// Mostly zeros and a run of few distinct values, so that flate finds
	// something to compress in every body, sparse ones included.
	x := make([]float32, 2048)
	for i := 100; i < 500; i++ {
		x[i] = float32(int(rng.NormFloat64()*3)) / 4
	}
	out := map[string][]byte{}
	for _, opts := range allOptions() {
		for _, b := range [][]float32{nil, base} {
			blob, err := Encode(x, b, opts)
			if err != nil {
				t.Fatal(err)
			}
			name := strings.NewReplacer("/", "-", "+", "-", "%", "pct").Replace(opts.String())
			if b != nil {
				name = "delta-" + name
			}
			out[name] = blob
		}
	}
	return out
}

// TestFuzzSeeds keeps the committed FuzzDecode seeds current: each decodes
// cleanly. Run with -update to rewrite them after a format change.
func TestFuzzSeeds(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	seeds := seedBlobs(t)
	if *updateSeeds {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, blob := range seeds {
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%s)\n", strconv.Quote(string(blob)))
			if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for name := range seeds {
		raw, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("seed %s missing (go test -run TestFuzzSeeds -update): %v", name, err)
		}
		_, lit, ok := bytes.Cut(raw, []byte("[]byte("))
		if !ok {
			t.Fatalf("seed %s: not a fuzz corpus file", name)
		}
		s, err := strconv.Unquote(string(bytes.TrimSpace(bytes.TrimSuffix(bytes.TrimSpace(lit), []byte(")")))))
		if err != nil {
			t.Fatalf("seed %s: %v", name, err)
		}
		if _, err := decodeFuzz(&Decoder{MaxElements: 1 << 16}, []byte(s)); err != nil {
			t.Errorf("seed %s no longer decodes: %v", name, err)
		}
		if h, _ := ParseHeader([]byte(s)); strings.Contains(name, "flate") != (h.Compressor == Flate) {
			t.Errorf("seed %s: compressor %v", name, h.Compressor)
		}
	}
}

// decodeFuzz decodes with the fuzz base when the blob is a delta of its size.
func decodeFuzz(d *Decoder, blob []byte) ([]float32, error) {
	var base []float32
	if h, err := ParseHeader(blob); err == nil && h.Delta() {
		base = fuzzBase()
	}
	return d.Decode(nil, blob, base)
}

// FuzzDecode feeds arbitrary bytes to the decoder: it must never panic,
// never exceed its element limit, and whatever it accepts must match the
// header it announced.
func FuzzDecode(f *testing.F) {
	for _, blob := range seedBlobs(f) {
		f.Add(blob)
	}
	f.Fuzz(func(t *testing.T, blob []byte) {
		d := Decoder{MaxElements: 1 << 16}
		out, err := decodeFuzz(&d, blob)
		if err != nil {
			if out != nil && len(out) != 0 {
				t.Fatalf("error %v with %d values", err, len(out))
			}
			for _, s := range []error{ErrCorrupt, ErrUnsupported, ErrTooLarge, ErrHashMismatch, ErrBaseMismatch} {
				if errors.Is(err, s) {
					return
				}
			}
			t.Fatalf("error %v matches no sentinel", err)
		}
		h, err := ParseHeader(blob)
		if err != nil {
			t.Fatalf("decoded a blob whose header fails: %v", err)
		}
		if len(out) != h.Count || HashParams(out) != h.ResultHash {
			t.Fatalf("decoded %d values, header says %d; hash matches: %v", len(out), h.Count, HashParams(out) == h.ResultHash)
		}
	})
}

// FuzzApply feeds the FuzzDecode corpus to Apply: it must never panic,
// and it must accept exactly the dense blobs Decode accepts, with the
// same values bit for bit, in chunks that end inside blocks and planes.
func FuzzApply(f *testing.F) {
	for _, blob := range seedBlobs(f) {
		f.Add(blob)
	}
	f.Fuzz(func(t *testing.T, blob []byte) {
		d := Decoder{MaxElements: 1 << 16}
		want, derr := decodeFuzz(&d, blob)
		h, herr := ParseHeader(blob)
		if herr != nil || h.Sparse() || h.Count > 1<<16 {
			return
		}
		dst := make([]float32, h.Count)
		if h.Delta() {
			copy(dst, fuzzBase())
		}
		a := Decoder{MaxElements: 1 << 16, ApplyChunk: 37}
		aerr := a.Apply(dst, bytes.NewReader(blob), int64(len(blob)))
		if (derr == nil) != (aerr == nil) {
			t.Fatalf("Decode: %v, Apply: %v", derr, aerr)
		}
		if derr != nil {
			return
		}
		for i := range want {
			if math.Float32bits(dst[i]) != math.Float32bits(want[i]) {
				t.Fatalf("[%d]: Apply %#x, Decode %#x", i, math.Float32bits(dst[i]), math.Float32bits(want[i]))
			}
		}
	})
}
