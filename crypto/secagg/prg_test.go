package secagg

import (
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestKernelsMatchGeneric(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	for n := range 100 {
		for _, off := range []int{0, 1, 3} { // misaligned slices too
			dst := make([]uint32, n+off)
			src := make([]uint32, n+off)
			ks := make([]byte, 4*(n+off)+off)
			for i := range dst {
				dst[i], src[i] = rng.Uint32(), rng.Uint32()
			}
			for i := range ks {
				ks[i] = byte(rng.Uint32())
			}
			d, s, k := dst[off:], src[off:], ks[off:off+4*n]
			for _, f := range []struct {
				name      string
				fast, ref func([]uint32)
			}{
				{"addKeystream", func(x []uint32) { addKeystream(x, k) }, func(x []uint32) { addKeystreamGeneric(x, k) }},
				{"subKeystream", func(x []uint32) { subKeystream(x, k) }, func(x []uint32) { subKeystreamGeneric(x, k) }},
				{"addVec", func(x []uint32) { addVec(x, s) }, func(x []uint32) { addVecGeneric(x, s) }},
			} {
				a, b := slices.Clone(d), slices.Clone(d)
				f.fast(a)
				f.ref(b)
				if !slices.Equal(a, b) {
					t.Fatalf("%s n=%d off=%d differs from the generic version", f.name, n, off)
				}
			}
			// guard words around the slice are untouched
			before := slices.Clone(dst)
			addKeystream(dst[off:off+n/2], ks[:4*(n/2)])
			if !slices.Equal(dst[:off], before[:off]) || !slices.Equal(dst[off+n/2:], before[off+n/2:]) {
				t.Fatalf("addKeystream n=%d wrote outside dst", n)
			}
		}
	}
}

// keystream returns the first n words of PRG(seed) the slow way.
func keystream(seed [32]byte, n int) []uint32 {
	b := make([]byte, 4*n)
	newPRG(seed, 0).XORKeyStream(b, b)
	w := make([]uint32, n)
	for i := range w {
		w[i] = binary.LittleEndian.Uint32(b[4*i:])
	}
	return w
}

func TestPRGSeek(t *testing.T) {
	var seed [32]byte
	for i := 16; i < 32; i++ {
		seed[i] = 0xff // counter about to wrap: exercises the carry
	}
	seed[3] = 7
	full := keystream(seed, 4*100)
	for _, block := range []uint64{1, 2, 37, 99} {
		b := make([]byte, 16)
		newPRG(seed, block).XORKeyStream(b, b)
		for i := range 4 {
			if got := binary.LittleEndian.Uint32(b[4*i:]); got != full[4*int(block)+i] {
				t.Fatalf("block %d word %d: seek disagrees with streaming", block, i)
			}
		}
	}
}

func TestApplyMasks(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 2))
	for _, tc := range []struct{ dim, terms int }{{1, 1}, {7, 3}, {5000, 5}, {300001, 9}} {
		terms := make([]maskTerm, tc.terms)
		for i := range terms {
			for j := range terms[i].seed {
				terms[i].seed[j] = byte(rng.Uint32())
			}
			terms[i].neg = i%2 == 1
		}
		x := make([]uint32, tc.dim)
		for i := range x {
			x[i] = rng.Uint32()
		}
		want := slices.Clone(x)
		for _, m := range terms {
			ks := keystream(m.seed, tc.dim)
			for i := range want {
				if m.neg {
					want[i] -= ks[i]
				} else {
					want[i] += ks[i]
				}
			}
		}
		got := slices.Clone(x)
		applyMasks(got, terms) // parallel for the large case
		if !slices.Equal(got, want) {
			t.Fatalf("dim=%d terms=%d: applyMasks differs from the reference", tc.dim, tc.terms)
		}
		// and the masks cancel: applying the opposite terms restores x
		for i := range terms {
			terms[i].neg = !terms[i].neg
		}
		applyMasks(got, terms)
		if !slices.Equal(got, x) {
			t.Fatalf("dim=%d: opposite masks do not cancel", tc.dim)
		}
	}
}
