package secagg

import (
	"encoding/binary"
	"encoding/hex"
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

// TestLowOrderX25519: the blacklist holds exactly the public keys with which
// key agreement fails, among the listed points, small and near-p values,
// and random keys.
func TestLowOrderX25519(t *testing.T) {
	priv, err := newX25519(rand.NewChaCha8([32]byte{1}))
	if err != nil {
		t.Fatal(err)
	}
	fails := func(u *[32]byte) bool {
		s, err := agree(priv, u)
		clear(s)
		return err != nil
	}
	var cands [][32]byte
	for v := range 300 { // u = v and u = p + v - 300 (p = 2^255 - 19), top bit on and off
		var lo, hi [32]byte
		binary.LittleEndian.PutUint16(lo[:], uint16(v))
		for i := range hi {
			hi[i] = 0xff
		}
		hi[31] = 0x7f
		hi[0] = byte(0xed - 300 + v + 19) // wraps; covers p-281 .. p+18 in the low byte
		cands = append(cands, lo, hi)
	}
	for _, h := range []string{ // the two points of order 8 (RFC 7748 section 7 discussion)
		"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
		"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
	} {
		b, _ := hex.DecodeString(h)
		cands = append(cands, [32]byte(b))
	}
	rng := rand.New(rand.NewPCG(5, 5))
	for range 500 {
		var u [32]byte
		for i := range u {
			u[i] = byte(rng.Uint32())
		}
		cands = append(cands, u)
	}
	blacklisted := map[[32]byte]bool{}
	for _, u := range cands {
		for _, top := range []byte{0, 0x80} {
			v := u
			v[31] = v[31]&0x7f | top
			if got, want := lowOrderX25519(&v), fails(&v); got != want {
				t.Fatalf("u=%x: blacklist says %v, key agreement fails: %v", v, got, want)
			}
			if lowOrderX25519(&v) {
				blacklisted[v] = true
			}
		}
	}
	if len(blacklisted) != 14 { // 0, 1, p-1, p, p+1 and the order-8 pair, top bit on and off
		t.Fatalf("%d distinct low-order keys found, want 14", len(blacklisted))
	}
}
