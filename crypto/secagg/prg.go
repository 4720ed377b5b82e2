package secagg

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"runtime"
	"sync"
)

// The mask PRG: a 32-byte seed keys AES-128 with its first 16 bytes and sets
// the initial CTR counter block to its last 16 bytes; the keystream, read as
// little-endian uint32 words, is the mask. Word w of the mask comes from
// counter block w/4, so any range of the vector can be expanded on its own.

// prgStream is the keystream generator of one seed.
type prgStream = cipher.Stream

// newPRG returns the keystream of seed positioned at 16-byte block `block`.
func newPRG(seed [32]byte, block uint64) prgStream {
	b, err := aes.NewCipher(seed[:16])
	if err != nil {
		panic("secagg: aes.NewCipher with a 16-byte key: " + err.Error()) // unreachable
	}
	var iv [16]byte
	hi := binary.BigEndian.Uint64(seed[16:24])
	lo := binary.BigEndian.Uint64(seed[24:32])
	lo2 := lo + block
	if lo2 < lo {
		hi++
	}
	binary.BigEndian.PutUint64(iv[:8], hi)
	binary.BigEndian.PutUint64(iv[8:], lo2)
	return cipher.NewCTR(b, iv[:])
}

// maskTerm is one mask to apply: PRG(seed), added or subtracted.
type maskTerm struct {
	seed [32]byte
	neg  bool
}

const (
	prgChunkWords = 2048  // keystream chunk: 8 KiB stays in L1 with its dst
	prgBlockWords = 32768 // dst block all terms visit in turn: 128 KiB, L2
	// prgParallelMin is the work (words x terms) below which one goroutine
	// is faster than starting several.
	prgParallelMin = 1 << 20
)

// applyMasks adds PRG(seed) (or subtracts it, for neg terms) into dst for
// every term, in place and modulo 2^32. It splits dst across up to
// GOMAXPROCS goroutines and waits for them.
func applyMasks(dst []uint32, terms []maskTerm) {
	if len(dst) == 0 || len(terms) == 0 {
		return
	}
	workers := 1
	if len(dst)*len(terms) >= prgParallelMin {
		workers = min(runtime.GOMAXPROCS(0), max(1, len(dst)/prgBlockWords), 16)
	}
	if workers == 1 {
		applyMasksRange(dst, 0, terms)
		return
	}
	// parts start on 4-word (one AES block) boundaries
	per := ((len(dst)+workers-1)/workers + 3) &^ 3
	var wg sync.WaitGroup
	for start := 0; start < len(dst); start += per {
		end := min(start+per, len(dst))
		wg.Add(1)
		go func() {
			defer wg.Done()
			applyMasksRange(dst[start:end], start, terms)
		}()
	}
	wg.Wait()
}

// applyMasksRange applies the terms to dst, which holds the words starting
// at word offset off (a multiple of 4) of the full vector. It walks dst in
// L2-sized blocks, applying every term to a block before moving on; on CPUs
// with VAES the fused kernel expands and adds the keystream in registers,
// and the portable AES-CTR stream covers whatever it leaves.
func applyMasksRange(dst []uint32, off int, terms []maskTerm) {
	var buf, zero []byte
	for bs := 0; bs < len(dst); bs += prgBlockWords {
		be := min(bs+prgBlockWords, len(dst))
		for i := range terms {
			t := &terms[i]
			w := maskFused(dst[bs:be], &t.seed, uint64((off+bs)/4), t.neg)
			if bs+w == be {
				continue
			}
			if buf == nil {
				buf = make([]byte, 4*prgChunkWords)
				zero = make([]byte, 4*prgChunkWords)
			}
			s := newPRG(t.seed, uint64((off+bs+w)/4))
			for cs := bs + w; cs < be; cs += prgChunkWords {
				ce := min(cs+prgChunkWords, be)
				ks := buf[:4*(ce-cs)]
				s.XORKeyStream(ks, zero[:len(ks)])
				if t.neg {
					subKeystream(dst[cs:ce], ks)
				} else {
					addKeystream(dst[cs:ce], ks)
				}
			}
		}
	}
}

// Portable versions of the vector kernels; the amd64 build uses SSE2
// assembly with the same semantics (tested against these).

func addKeystreamGeneric(dst []uint32, ks []byte) {
	ks = ks[:4*len(dst)]
	for i := range dst {
		dst[i] += binary.LittleEndian.Uint32(ks[4*i:])
	}
}

func subKeystreamGeneric(dst []uint32, ks []byte) {
	ks = ks[:4*len(dst)]
	for i := range dst {
		dst[i] -= binary.LittleEndian.Uint32(ks[4*i:])
	}
}

func addVecGeneric(dst, src []uint32) {
	src = src[:len(dst)]
	for i := range dst {
		dst[i] += src[i]
	}
}
