package dp

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// goldenAccountant, goldenBudget and goldenClip build the states whose
// encodings are pinned in testdata/*.golden, so that a format change that
// would break the coordinator's stored state shows up as a test failure. They
// use only exactly rounded arithmetic (unsampled steps, α/(2σ²); clips that
// hit their bounds), never transcendental functions, whose last bit may
// differ between architectures.
func goldenAccountant(t testing.TB) *Accountant {
	a, err := NewAccountant([]float64{1.5, 2, 4, 8, 16, 32, 64})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Step(1, 10, 1000); err != nil {
		t.Fatal(err)
	}
	if err := a.Step(1, 3, 1); err != nil {
		t.Fatal(err)
	}
	return a
}

func goldenBudget(t testing.TB) *Budget {
	b, err := NewBudget(Params{Epsilon: 8, Delta: 1e-5, Rounds: 100, SampleRate: 0.05, NoiseMultiplier: 1.25,
		Orders: []float64{2, 4, 8, 16, 32}})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := b.Spend(1); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func goldenClip(t testing.TB) *AdaptiveClip {
	a, err := NewAdaptiveClip(AdaptiveClipConfig{InitialClip: 1, TargetQuantile: 0.75, MinClip: 0.5, MaxClip: 2, LearningRate: 4})
	if err != nil {
		t.Fatal(err)
	}
	// b̄ = γ leaves C alone (exp(0) = 1); b̄ = 0 then pushes it to MaxClip.
	for _, s := range []float64{2.5, 2.5, -5} {
		if _, err := a.Update(s, 10, nil); err != nil {
			t.Fatal(err)
		}
	}
	if a.Clip() != 2 {
		t.Fatalf("golden clip %v, want 2", a.Clip())
	}
	return a
}

func TestEncodingsGolden(t *testing.T) {
	type marshaler interface{ MarshalBinary() ([]byte, error) }
	tests := []struct {
		file string
		v    marshaler
	}{
		{"accountant_v1.golden", goldenAccountant(t)},
		{"budget_v1.golden", goldenBudget(t)},
		{"adaptiveclip_v1.golden", goldenClip(t)},
	}
	for _, tt := range tests {
		got, err := tt.v.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join("testdata", tt.file)
		if *update {
			if err := os.WriteFile(path, []byte(hex.Dump(got)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if hex.Dump(got) != string(want) {
			t.Errorf("%s: encoding changed:\n%s\nwant:\n%s", tt.file, hex.Dump(got), want)
		}
	}
	// Decoding the pinned bytes gives back the same state.
	a := goldenAccountant(t)
	data, _ := a.MarshalBinary()
	var b Accountant
	if err := b.UnmarshalBinary(data); err != nil {
		t.Fatal(err)
	}
	e1, o1 := a.Epsilon(1e-5)
	e2, o2 := b.Epsilon(1e-5)
	if e1 != e2 || o1 != o2 || b.Steps() != 1001 || b.Events() != 2 || e1 == 0 {
		t.Errorf("decoded accountant: ε %v at %v (want %v at %v), steps %d events %d", e2, o2, e1, o1, b.Steps(), b.Events())
	}
}

func TestAccountantUnmarshalRejects(t *testing.T) {
	good, _ := goldenAccountant(t).MarshalBinary()
	mutate := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	putF := func(b []byte, off int, v float64) []byte {
		for i := range 8 {
			b[off+i] = byte(math.Float64bits(v) >> (8 * i))
		}
		return b
	}
	cases := map[string][]byte{
		"empty":        nil,
		"magic":        mutate(func(b []byte) []byte { b[0] = 'X'; return b }),
		"version":      mutate(func(b []byte) []byte { b[4] = 2; return b }),
		"count-zero":   mutate(func(b []byte) []byte { b[21], b[22], b[23], b[24] = 0, 0, 0, 0; return b }),
		"count-huge":   mutate(func(b []byte) []byte { b[24] = 0xff; return b }),
		"trailing":     append(bytes.Clone(good), 0),
		"order-nan":    mutate(func(b []byte) []byte { return putF(b, accountantHeader, math.NaN()) }),
		"order-one":    mutate(func(b []byte) []byte { return putF(b, accountantHeader, 1) }),
		"order-unsort": mutate(func(b []byte) []byte { return putF(b, accountantHeader, 3) }),
		"rdp-negative": mutate(func(b []byte) []byte { return putF(b, accountantHeader+8, -1) }),
		"rdp-nan":      mutate(func(b []byte) []byte { return putF(b, accountantHeader+8, math.NaN()) }),
	}
	for name, data := range cases {
		a := goldenAccountant(t)
		before, _ := a.MarshalBinary()
		if err := a.UnmarshalBinary(data); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v", name, err)
		}
		if after, _ := a.MarshalBinary(); !bytes.Equal(before, after) {
			t.Errorf("%s: failed decode changed the accountant", name)
		}
	}
}

// fuzzRoundTrip checks the decoder contract shared by all three encodings:
// no panic, and anything accepted re-encodes to exactly the same bytes.
func fuzzRoundTrip(t *testing.T, data []byte, v interface {
	UnmarshalBinary([]byte) error
	MarshalBinary() ([]byte, error)
}) bool {
	err := v.UnmarshalBinary(data)
	if err != nil {
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("error %v does not wrap ErrCorrupt", err)
		}
		return false
	}
	again, err := v.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, data) {
		t.Fatalf("accepted %x but re-encodes as %x", data, again)
	}
	return true
}

func FuzzAccountantUnmarshal(f *testing.F) {
	good, _ := goldenAccountant(f).MarshalBinary()
	f.Add(good)
	f.Add(good[:accountantHeader])
	f.Fuzz(func(t *testing.T, data []byte) {
		var a Accountant
		if fuzzRoundTrip(t, data, &a) {
			e, _ := a.Epsilon(1e-5)
			if math.IsNaN(e) || e < 0 {
				t.Fatalf("decoded accountant gives ε = %v", e)
			}
			if err := a.Step(1, 1, 1); err != nil { // closed form: cheap for any orders
				t.Fatal(err)
			}
		}
	})
}

func FuzzBudgetUnmarshal(f *testing.F) {
	good, _ := goldenBudget(f).MarshalBinary()
	f.Add(good)
	f.Add(good[:budgetHeader])
	f.Fuzz(func(t *testing.T, data []byte) {
		var b Budget
		if fuzzRoundTrip(t, data, &b) {
			if e := b.Epsilon(); math.IsNaN(e) || e < 0 {
				t.Fatalf("decoded budget gives ε = %v", e)
			}
			r, err := b.Preview(0.01)
			if err != nil && !errors.Is(err, ErrBudgetExhausted) {
				t.Fatal(err)
			}
			if math.IsNaN(r.Epsilon) {
				t.Fatalf("preview ε NaN")
			}
		}
	})
}

func FuzzAdaptiveClipUnmarshal(f *testing.F) {
	good, _ := goldenClip(f).MarshalBinary()
	f.Add(good)
	f.Add([]byte(strings.Repeat("\x00", adaptiveClipSize)))
	f.Fuzz(func(t *testing.T, data []byte) {
		var a AdaptiveClip
		if fuzzRoundTrip(t, data, &a) {
			c, err := a.Update(0, 10, NewSeededSource(1))
			if err != nil || !(c > 0) || math.IsInf(c, 0) {
				t.Fatalf("update of decoded state: %v, %v", c, err)
			}
		}
	})
}
