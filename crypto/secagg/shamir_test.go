package secagg

import (
	"math/rand/v2"
	"testing"
)

func TestFieldArithmetic(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	edge := []uint64{0, 1, 2, fieldP - 1, fieldP - 2, 1 << 60, 1<<61 - 2}
	for range 2000 {
		a, b := rng.Uint64N(fieldP), rng.Uint64N(fieldP)
		if rng.IntN(4) == 0 {
			a = edge[rng.IntN(len(edge))]
		}
		// reference: a*b mod p by double-and-add, never overflowing
		want := uint64(0)
		x, y := a, b
		for y > 0 {
			if y&1 == 1 {
				want = (want + x) % fieldP
			}
			x = (x + x) % fieldP
			y >>= 1
		}
		if got := fMul(a, b); got != want {
			t.Fatalf("fMul(%d, %d) = %d, want %d", a, b, got, want)
		}
		if got := fAdd(a, b); got != (a+b)%fieldP {
			t.Fatalf("fAdd(%d, %d) = %d", a, b, got)
		}
		if got := fSub(a, b); fAdd(got, b) != a {
			t.Fatalf("fSub(%d, %d) = %d", a, b, got)
		}
		if a != 0 && fMul(a, fInv(a)) != 1 {
			t.Fatalf("fInv(%d) wrong", a)
		}
	}
}

func TestShamir(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	tests := []struct{ n, t int }{{3, 2}, {5, 3}, {21, 11}, {100, 51}, {5000, 101}}
	if !testing.Short() {
		tests = append(tests, struct{ n, t int }{5000, 2501})
	}
	for _, tt := range tests {
		var secret [32]byte
		for i := range secret {
			secret[i] = byte(rng.Uint32())
		}
		xs := make([]uint64, tt.n)
		for i := range xs {
			xs[i] = uint64(i) + 1
		}
		shares, err := shamirSplit(&secret, tt.t, xs, rand.NewChaCha8([32]byte{byte(tt.n)}))
		if err != nil {
			t.Fatal(err)
		}
		cache := lagrangeCache{}
		// any t shares rebuild the secret
		for trial := range 3 {
			perm := rng.Perm(tt.n)[:tt.t]
			px := make([]uint64, tt.t)
			ps := make([]share, tt.t)
			for i, j := range perm {
				px[i], ps[i] = xs[j], shares[j]
			}
			got, ok := shamirCombine(ps, cache.get(px))
			if !ok || got != secret {
				t.Fatalf("n=%d t=%d trial %d: reconstruction failed", tt.n, tt.t, trial)
			}
			// t-1 shares give an unrelated value, which the range check
			// rejects or which differs from the secret
			got, ok = shamirCombine(ps[:tt.t-1], lagrangeAtZero(px[:tt.t-1]))
			if ok && got == secret {
				t.Fatalf("n=%d t=%d: t-1 shares revealed the secret", tt.n, tt.t)
			}
		}
	}
}

// TestShamirSingleShareUniform: with t = 2 one share reveals nothing: its
// distribution is uniform whatever the secret (all zeros or all ones).
func TestShamirSingleShareUniform(t *testing.T) {
	const trials = 4000
	var zero, ones [32]byte
	for i := range ones {
		ones[i] = 0xff
	}
	var hz, ho [16]int
	r := rand.NewChaCha8([32]byte{9})
	for range trials {
		sz, _ := shamirSplit(&zero, 2, []uint64{7}, r)
		so, _ := shamirSplit(&ones, 2, []uint64{7}, r)
		hz[sz[0][0]>>57]++
		ho[so[0][0]>>57]++
	}
	for i := range hz {
		// each of the 16 top-4-bit buckets expects 250 hits
		if hz[i] < 170 || hz[i] > 330 || ho[i] < 170 || ho[i] > 330 {
			t.Fatalf("bucket %d: %d (secret 0) vs %d (secret ff..): a share is not uniform", i, hz[i], ho[i])
		}
	}
}

func TestSecretElems(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for range 100 {
		var s [32]byte
		for i := range s {
			s[i] = byte(rng.Uint32())
		}
		got, ok := elemsToSecret(secretToElems(&s))
		if !ok || got != s {
			t.Fatal("secret encoding does not round-trip")
		}
	}
	var e share
	e[4] = 1 << 32
	if _, ok := elemsToSecret(e); ok {
		t.Fatal("out-of-range element accepted")
	}
}

func BenchmarkShamirReconstruct1000x11(b *testing.B) {
	var secret [32]byte
	xs := make([]uint64, 21)
	for i := range xs {
		xs[i] = uint64(3*i + 1)
	}
	shares, _ := shamirSplit(&secret, 11, xs, rand.NewChaCha8([32]byte{}))
	for b.Loop() {
		cache := lagrangeCache{}
		for k := range 1000 {
			// a different point set per secret, as in a k-regular graph
			px := make([]uint64, 11)
			for i := range px {
				px[i] = xs[i] + uint64(k)*100
			}
			lam := cache.get(px)
			shamirCombine(shares[:11], lam)
		}
	}
}
