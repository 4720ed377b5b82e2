package encoding

import (
	"encoding/binary"
	"math"
	"slices"
)

// Float32ToHalf converts f to IEEE 754 binary16 bits, rounding to nearest with
// ties to even. Values whose magnitude rounds past 65504 become ±Inf, values
// below half the smallest subnormal (2^-25) become ±0, NaN stays NaN (its top
// payload bits are kept; a payload that would vanish becomes the quiet bit).
func Float32ToHalf(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	a := b & 0x7fffffff
	switch {
	case a >= 0x47800000: // |f| >= 2^16, Inf or NaN
		if a > 0x7f800000 {
			m := uint16(a>>13) & 0x3ff
			if m == 0 {
				m = 0x200
			}
			return sign | 0x7c00 | m
		}
		return sign | 0x7c00
	case a < 0x38800000: // |f| < 2^-14: a half subnormal or zero
		// In [0.5, 1) a float32 ulp is 2^-24, the half subnormal unit, and
		// 0.5 has an all-zero mantissa: adding 0.5 rounds |f| to a whole
		// number of units (nearest, ties to even), which the mantissa then
		// holds. 1024 units carry into the exponent: the smallest normal.
		v := math.Float32frombits(a) + 0.5
		return sign | uint16(math.Float32bits(v)-0x3f000000)
	default:
		// Normal: rebias the exponent (127 → 15) and round the mantissa
		// from 23 to 10 bits, ties to even. A carry out of the mantissa
		// bumps the exponent, up to Inf for [65520, 65536).
		odd := (a >> 13) & 1
		a += 0xfff + odd - 112<<23
		return sign | uint16(a>>13)
	}
}

// HalfToFloat32 converts IEEE 754 binary16 bits to float32 exactly.
func HalfToFloat32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	a := uint32(h&0x7fff) << 13
	if a >= 0x0f800000 { // Inf or NaN: exponent all ones, payload kept
		return math.Float32frombits(sign | a | 0x7f800000)
	}
	// The bits read as a float32 with the half's exponent field and an
	// exponent bias of 127 instead of 15; scaling by 2^112 fixes the bias
	// and normalizes half subnormals (float32 denormals) exactly.
	f := math.Float32frombits(a) * 0x1p112
	return math.Float32frombits(math.Float32bits(f) | sign)
}

// appendHalf appends the little-endian binary16 encoding of x to dst.
func appendHalf(dst []byte, x []float32) []byte {
	off := len(dst)
	dst = grow(dst, 2*len(x))
	out := dst[off : off+2*len(x)]
	i := 0
	for ; i+4 <= len(x); i += 4 {
		v := x[i : i+4 : i+4]
		o := out[2*i : 2*i+8 : 2*i+8]
		binary.LittleEndian.PutUint16(o[0:], Float32ToHalf(v[0]))
		binary.LittleEndian.PutUint16(o[2:], Float32ToHalf(v[1]))
		binary.LittleEndian.PutUint16(o[4:], Float32ToHalf(v[2]))
		binary.LittleEndian.PutUint16(o[6:], Float32ToHalf(v[3]))
	}
	for ; i < len(x); i++ {
		binary.LittleEndian.PutUint16(out[2*i:], Float32ToHalf(x[i]))
	}
	return dst
}

// decodeHalf decodes len(dst) little-endian binary16 values from src, which
// must hold at least 2*len(dst) bytes.
func decodeHalf(dst []float32, src []byte) {
	src = src[:2*len(dst)]
	i := 0
	for ; i+4 <= len(dst); i += 4 {
		d := dst[i : i+4 : i+4]
		s := src[2*i : 2*i+8 : 2*i+8]
		d[0] = HalfToFloat32(binary.LittleEndian.Uint16(s[0:]))
		d[1] = HalfToFloat32(binary.LittleEndian.Uint16(s[2:]))
		d[2] = HalfToFloat32(binary.LittleEndian.Uint16(s[4:]))
		d[3] = HalfToFloat32(binary.LittleEndian.Uint16(s[6:]))
	}
	for ; i < len(dst); i++ {
		dst[i] = HalfToFloat32(binary.LittleEndian.Uint16(src[2*i:]))
	}
}

// grow extends dst by n bytes (contents of the new bytes unspecified) and
// returns the longer slice.
func grow(dst []byte, n int) []byte {
	return slices.Grow(dst, n)[:len(dst)+n]
}
