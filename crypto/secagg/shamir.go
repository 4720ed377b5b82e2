package secagg

import (
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
)

// Shamir secret sharing over GF(p), p = 2^61 - 1 (a Mersenne prime, so a
// product reduces with shifts and adds). A 32-byte secret is cut into five
// field elements of at most 56 bits (7+7+7+7+4 bytes) and each element is
// shared with its own random polynomial of degree t-1; a holder's share is
// the five evaluations at its point x = index+1, so up to p-1 holders are
// possible. Reconstruction checks that every element is below its bound,
// which catches a wrong share with probability 1 - 2^-49.

const (
	fieldP      uint64 = 1<<61 - 1
	secretElems        = 5
)

// ShareSize is the size of one encoded Shamir share: five little-endian
// uint64 field elements.
const ShareSize = 8 * secretElems

// share is one holder's share of one 32-byte secret.
type share [secretElems]uint64

func fAdd(a, b uint64) uint64 {
	s := a + b // < 2^62
	s = (s & fieldP) + (s >> 61)
	if s >= fieldP {
		s -= fieldP
	}
	return s
}

func fSub(a, b uint64) uint64 { return fAdd(a, fieldP-b) }

func fMul(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b) // a, b < 2^61: product < 2^122
	s := (lo & fieldP) + (lo>>61 | hi<<3)
	s = (s & fieldP) + (s >> 61)
	if s >= fieldP {
		s -= fieldP
	}
	return s
}

// fInv returns a^(p-2) = a^-1 for a != 0.
func fInv(a uint64) uint64 {
	r := uint64(1)
	e := fieldP - 2
	for e > 0 {
		if e&1 == 1 {
			r = fMul(r, a)
		}
		a = fMul(a, a)
		e >>= 1
	}
	return r
}

// elemBits is the width of each secret element.
var elemBits = [secretElems]uint{56, 56, 56, 56, 32}

func secretToElems(s *[32]byte) share {
	var e share
	var buf [8]byte
	off := 0
	for i, w := range elemBits {
		nb := int(w / 8)
		clear(buf[:])
		copy(buf[:], s[off:off+nb])
		e[i] = binary.LittleEndian.Uint64(buf[:])
		off += nb
	}
	return e
}

// elemsToSecret inverts secretToElems; ok is false if an element is out of
// range, which means the shares were inconsistent.
func elemsToSecret(e share) (s [32]byte, ok bool) {
	var buf [8]byte
	off := 0
	for i, w := range elemBits {
		if e[i]>>w != 0 {
			return s, false
		}
		binary.LittleEndian.PutUint64(buf[:], e[i])
		nb := int(w / 8)
		copy(s[off:off+nb], buf[:nb])
		off += nb
	}
	return s, true
}

// randomElems fills dst with uniform field elements read from rand.
func randomElems(dst []uint64, rand io.Reader) error {
	buf := make([]byte, 8*len(dst))
	for i := 0; i < len(dst); {
		if _, err := io.ReadFull(rand, buf[:8*(len(dst)-i)]); err != nil {
			return err
		}
		for off := 0; off+8 <= len(buf) && i < len(dst); off += 8 {
			v := binary.LittleEndian.Uint64(buf[off:]) & fieldP
			if v != fieldP { // reject the single out-of-range value
				dst[i] = v
				i++
			}
		}
	}
	return nil
}

// shamirSplit returns the shares of secret for the holders at points xs
// (distinct, nonzero) with threshold t.
func shamirSplit(secret *[32]byte, t int, xs []uint64, rand io.Reader) ([]share, error) {
	coef := make([]uint64, secretElems*(t-1))
	if err := randomElems(coef, rand); err != nil {
		return nil, fmt.Errorf("shamirSplit: %w", err)
	}
	defer clear(coef)
	e := secretToElems(secret)
	out := make([]share, len(xs))
	for h, x := range xs {
		for i := range secretElems {
			c := coef[i*(t-1) : (i+1)*(t-1)]
			// Horner: a_(t-1) x^(t-1) + ... + a_1 x + secret
			acc := uint64(0)
			for j := len(c) - 1; j >= 0; j-- {
				acc = fAdd(fMul(acc, x), c[j])
			}
			out[h][i] = fAdd(fMul(acc, x), e[i])
		}
	}
	return out, nil
}

// lagrangeAtZero returns the coefficients l_i with f(0) = sum_i l_i f(x_i)
// for distinct nonzero points xs: l_i = prod_(j!=i) x_j / (x_j - x_i).
func lagrangeAtZero(xs []uint64) []uint64 {
	n := len(xs)
	num := uint64(1)
	for _, x := range xs {
		num = fMul(num, x)
	}
	den := make([]uint64, n)
	for i, xi := range xs {
		d := xi
		for j, xj := range xs {
			if j != i {
				d = fMul(d, fSub(xj, xi))
			}
		}
		den[i] = d
	}
	// batch inversion (Montgomery's trick): one exponentiation for all
	prefix := make([]uint64, n)
	acc := uint64(1)
	for i, d := range den {
		prefix[i] = acc
		acc = fMul(acc, d)
	}
	inv := fInv(acc)
	for i := n - 1; i >= 0; i-- {
		di := fMul(inv, prefix[i]) // 1/den[i]
		inv = fMul(inv, den[i])
		den[i] = fMul(num, di)
	}
	return den
}

// lagrangeCache memoizes coefficients per point set: in classic SecAgg most
// secrets are rebuilt from the same holders.
type lagrangeCache map[string][]uint64

func (c lagrangeCache) get(xs []uint64) []uint64 {
	key := make([]byte, 0, 4*len(xs))
	for _, x := range xs {
		key = binary.LittleEndian.AppendUint32(key, uint32(x))
	}
	if l, ok := c[string(key)]; ok {
		return l
	}
	l := lagrangeAtZero(xs)
	c[string(key)] = l
	return l
}

// shamirCombine reconstructs a secret from shares at the points whose
// Lagrange coefficients are lam.
func shamirCombine(shares []share, lam []uint64) ([32]byte, bool) {
	var e share
	for h, s := range shares {
		for i := range secretElems {
			e[i] = fAdd(e[i], fMul(lam[h], s[i]))
		}
	}
	return elemsToSecret(e)
}

func (s *share) appendTo(b []byte) []byte {
	for _, v := range s {
		b = binary.LittleEndian.AppendUint64(b, v)
	}
	return b
}

// parseShare decodes ShareSize bytes; every element must be below p.
func parseShare(b []byte) (share, bool) {
	var s share
	for i := range s {
		s[i] = binary.LittleEndian.Uint64(b[8*i:])
		if s[i] >= fieldP {
			return s, false
		}
	}
	return s, true
}
