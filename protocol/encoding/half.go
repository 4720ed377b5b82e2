package encoding

import (
	"math"
	"slices"
)

// Float32ToHalf converts f to IEEE 754 binary16 bits, rounding to nearest with
// ties to even. Values whose magnitude rounds past 65504 become ±Inf, values
// below half the smallest subnormal (2^-25) become ±0, NaN stays NaN (its top
// payload bits are kept; a payload that would vanish becomes the quiet bit).
func Float32ToHalf(f float32) uint16 {
	b := math.Float32bits(f)
	a := b & 0x7fffffff
	if a-0x38800000 < 0x47800000-0x38800000 { // 2^-14 <= |f| < 2^16: normal
		// Rebias the exponent (127 → 15) and round the mantissa from 23 to
		// 10 bits, ties to even. A carry out of the mantissa bumps the
		// exponent, up to Inf for [65520, 65536).
		a += 0xfff + (a>>13)&1 - 112<<23
		return uint16(b>>16)&0x8000 | uint16(a>>13)
	}
	return float32ToHalfRare(b)
}

// float32ToHalfRare converts the magnitudes outside the half normal range:
// subnormals and zero, overflow, Inf and NaN.
func float32ToHalfRare(b uint32) uint16 {
	sign := uint16(b>>16) & 0x8000
	a := b & 0x7fffffff
	switch {
	case a > 0x7f800000: // NaN
		m := uint16(a>>13) & 0x3ff
		if m == 0 {
			m = 0x200
		}
		return sign | 0x7c00 | m
	case a >= 0x47800000: // |f| >= 2^16 or Inf
		return sign | 0x7c00
	}
	// |f| < 2^-14: a half subnormal or zero. In [0.5, 1) a float32 ulp is
	// 2^-24, the half subnormal unit, and 0.5 has an all-zero mantissa:
	// adding 0.5 rounds |f| to a whole number of units (nearest, ties to
	// even), which the mantissa then holds. 1024 units carry into the
	// exponent: the smallest normal.
	v := math.Float32frombits(a) + 0.5
	return sign | uint16(math.Float32bits(v)-0x3f000000)
}

// HalfToFloat32 converts IEEE 754 binary16 bits to float32 exactly.
func HalfToFloat32(h uint16) float32 {
	a := uint32(h&0x7fff) << 13
	if a-0x00800000 < 0x0f800000-0x00800000 { // normal: rebias 15 → 127
		return math.Float32frombits(uint32(h&0x8000)<<16 | (a + 112<<23))
	}
	return halfToFloat32Rare(h)
}

// halfToFloat32Rare converts zero, subnormals, Inf and NaN.
func halfToFloat32Rare(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	a := uint32(h&0x7fff) << 13
	if a >= 0x0f800000 { // Inf or NaN: exponent all ones, payload kept
		return math.Float32frombits(sign | a | 0x7f800000)
	}
	// A subnormal m·2^-24 read as float32 bits is the denormal m·2^-136;
	// scaling by 2^112 is exact.
	f := math.Float32frombits(a) * 0x1p112
	return math.Float32frombits(math.Float32bits(f) | sign)
}

// appendHalf appends the little-endian binary16 encoding of x to dst. The
// normal-range conversion of Float32ToHalf is written out in the loop (the
// function is over the inlining budget).
func appendHalf(dst []byte, x []float32) []byte {
	off := len(dst)
	dst = grow(dst, 2*len(x))
	putHalf(dst[off:off+2*len(x)], x)
	return dst
}

// putHalf writes the little-endian binary16 encoding of x to out.
func putHalf(out []byte, x []float32) {
	out = out[:2*len(x)]
	for i, v := range x {
		b := math.Float32bits(v)
		a := b & 0x7fffffff
		var h uint16
		if a-0x38800000 < 0x47800000-0x38800000 {
			a += 0xfff + (a>>13)&1 - 112<<23
			h = uint16(b>>16)&0x8000 | uint16(a>>13)
		} else {
			h = float32ToHalfRare(b)
		}
		o := out[2*i : 2*i+2 : 2*i+2]
		o[0] = byte(h)
		o[1] = byte(h >> 8)
	}
}

// decodeHalf decodes len(dst) little-endian binary16 values from src, which
// must hold at least 2*len(dst) bytes. The normal-range conversion of
// HalfToFloat32 is written out in the loop.
func decodeHalf(dst []float32, src []byte) {
	src = src[:2*len(dst)]
	for i := range dst {
		s := src[2*i : 2*i+2 : 2*i+2]
		h := uint16(s[0]) | uint16(s[1])<<8
		a := uint32(h&0x7fff) << 13
		if a-0x00800000 < 0x0f800000-0x00800000 {
			dst[i] = math.Float32frombits(uint32(h&0x8000)<<16 | (a + 112<<23))
		} else {
			dst[i] = halfToFloat32Rare(h)
		}
	}
}

// grow extends dst by n bytes (contents of the new bytes unspecified) and
// returns the longer slice.
func grow(dst []byte, n int) []byte {
	return slices.Grow(dst, n)[:len(dst)+n]
}
