package secagg

import (
	"crypto/aes"
	"math/rand/v2"
	"testing"
)

// portableMask applies PRG(seed) from block `block` with the stdlib stream.
func portableMask(dst []uint32, seed [32]byte, block uint64, neg bool) {
	s := newPRG(seed, block)
	ks := make([]byte, 4*len(dst))
	s.XORKeyStream(ks, ks)
	if neg {
		subKeystreamGeneric(dst, ks)
	} else {
		addKeystreamGeneric(dst, ks)
	}
}

func TestExpandKey128MatchesAES(t *testing.T) {
	// Encrypting with the expanded keys by hand is what the kernel does; a
	// wrong schedule shows up in TestMaskFusedMatchesPortable. Here: the
	// FIPS-197 appendix A.1 key schedule's last round key.
	key := []byte{0x2b, 0x7e, 0x15, 0x16, 0x28, 0xae, 0xd2, 0xa6, 0xab, 0xf7, 0x15, 0x88, 0x09, 0xcf, 0x4f, 0x3c}
	var rk [176]byte
	expandKey128(&rk, key)
	want := []byte{0xd0, 0x14, 0xf9, 0xa8, 0xc9, 0xee, 0x25, 0x89, 0xe1, 0x3f, 0x0c, 0xc8, 0xb6, 0x63, 0x0c, 0xa6}
	for i, b := range want {
		if rk[160+i] != b {
			t.Fatalf("round key 10 byte %d = %#x, want %#x", i, rk[160+i], b)
		}
	}
	if _, err := aes.NewCipher(key); err != nil {
		t.Fatal(err)
	}
}

func TestMaskFusedMatchesPortable(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	covered := 0
	for trial := 0; trial < 200; trial++ {
		var seed [32]byte
		for i := range seed {
			seed[i] = byte(r.Uint32())
		}
		if trial%7 == 0 {
			// low counter half near its wrap: the fused path must decline
			// or produce the same words
			for i := 24; i < 32; i++ {
				seed[i] = 0xff
			}
		}
		n := r.IntN(3000)
		block := uint64(r.IntN(1000))
		neg := r.IntN(2) == 0
		base := make([]uint32, n)
		for i := range base {
			base[i] = r.Uint32()
		}
		want := append([]uint32(nil), base...)
		portableMask(want, seed, block, neg)
		got := append([]uint32(nil), base...)
		w := maskFused(got, &seed, block, neg)
		if w%32 != 0 || w > n {
			t.Fatalf("covered %d of %d words", w, n)
		}
		if w < n {
			portableMask(got[w:], seed, block+uint64(w/4), neg)
		}
		covered += w
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("trial %d (n=%d block=%d neg=%v covered=%d): word %d = %#x, want %#x", trial, n, block, neg, w, i, got[i], want[i])
			}
		}
	}
	if hasVAES && covered == 0 {
		t.Fatal("the VAES kernel never ran")
	}
}
