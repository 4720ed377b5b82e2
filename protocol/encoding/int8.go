package encoding

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
)

// roundMagic is 1.5·2^23: adding it to a float32 of magnitude below 2^22
// rounds to an integer (nearest, ties to even) that lands in the low
// mantissa bits, whose low byte is then the two's complement int8.
const roundMagic = 0x1.8p23

// minNormal32 is the smallest normal float32.
const minNormal32 = 0x1p-126

// appendInt8 appends the int8 encoding of x with block size bs to dst: one
// little-endian float32 scale per block, then one signed byte per value.
// scale = max|x|/127 per block; values are rounded to nearest (ties to even),
// or stochastically when rng is not nil (unbiased: E[q·scale] = x).
func appendInt8(dst []byte, x []float32, bs int, rng *rand.PCG) ([]byte, error) {
	nb := (len(x) + bs - 1) / bs
	off := len(dst)
	dst = grow(dst, 4*nb+len(x))
	if err := quantizeInt8(dst[off:off+4*nb], dst[off+4*nb:], x, bs, rng); err != nil {
		return dst[:off], err
	}
	return dst, nil
}

// quantizeInt8 quantizes x in blocks of bs into scales (4 bytes per block)
// and q (one byte per value); see appendInt8.
func quantizeInt8(scales, q []byte, x []float32, bs int, rng *rand.PCG) error {
	q = q[:len(x)]
	for b := 0; b*bs < len(x); b++ {
		lo := b * bs
		hi := min(lo+bs, len(x))
		xb := x[lo:hi]
		m := maxAbsBits(xb)
		if m >= 0x7f800000 {
			return ErrNonFinite
		}
		var scale float32
		if rng != nil {
			scale = quantizeStochastic(q[lo:hi], xb, m, rng)
		} else {
			scale = quantizeNearest(q[lo:hi], xb, m)
		}
		binary.LittleEndian.PutUint32(scales[4*b:], math.Float32bits(scale))
	}
	return nil
}

// maxAbsBits returns the largest |x| as float32 bits (bits of non-negative
// floats order like the floats; NaN sorts above Inf).
func maxAbsBits(x []float32) uint32 {
	var m0, m1, m2, m3 uint32
	i := 0
	for ; i+4 <= len(x); i += 4 {
		v := x[i : i+4 : i+4]
		m0 = max(m0, math.Float32bits(v[0])&0x7fffffff)
		m1 = max(m1, math.Float32bits(v[1])&0x7fffffff)
		m2 = max(m2, math.Float32bits(v[2])&0x7fffffff)
		m3 = max(m3, math.Float32bits(v[3])&0x7fffffff)
	}
	for ; i < len(x); i++ {
		m0 = max(m0, math.Float32bits(x[i])&0x7fffffff)
	}
	return max(m0, m1, m2, m3)
}

// quantizeNearest writes round(x/scale) into q and returns scale; m is
// maxAbsBits(x), finite.
func quantizeNearest(q []byte, x []float32, m uint32) float32 {
	q = q[:len(x)]
	if m == 0 {
		clear(q)
		return 0
	}
	maxv := math.Float32frombits(m)
	scale := blockScale(maxv)
	inv := 127 / maxv
	if scale < minNormal32 || math.IsInf(float64(inv), 0) {
		return quantizeTiny(q, x, maxv, scale)
	}
	i := 0
	for ; i+4 <= len(x); i += 4 {
		v := x[i : i+4 : i+4]
		o := q[i : i+4 : i+4]
		// The float32 conversions forbid fusing the multiply into the add.
		o[0] = byte(math.Float32bits(float32(v[0]*inv) + roundMagic))
		o[1] = byte(math.Float32bits(float32(v[1]*inv) + roundMagic))
		o[2] = byte(math.Float32bits(float32(v[2]*inv) + roundMagic))
		o[3] = byte(math.Float32bits(float32(v[3]*inv) + roundMagic))
	}
	for ; i < len(x); i++ {
		q[i] = byte(math.Float32bits(float32(x[i]*inv) + roundMagic))
	}
	return scale
}

// blockScale is maxv/127, nudged down when 127·scale would overflow to Inf
// (maxv near math.MaxFloat32).
func blockScale(maxv float32) float32 {
	scale := maxv / 127
	if s := float32(127) * scale; s > math.MaxFloat32 {
		scale = math.Nextafter32(scale, 0)
	}
	return scale
}

// quantizeTiny handles blocks whose scale is not a normal float32: the
// quotient is taken in float64 and clamped.
func quantizeTiny(q []byte, x []float32, maxv, scale float32) float32 {
	if scale == 0 {
		clear(q)
		return 0
	}
	r := 127 / float64(maxv)
	for i, v := range x {
		q[i] = byte(int8(max(-127, min(127, math.RoundToEven(float64(v)*r)))))
	}
	return scale
}

// quantizeStochastic writes floor(x/scale + u), u uniform in [0, 1), into q
// and returns scale.
func quantizeStochastic(q []byte, x []float32, m uint32, rng *rand.PCG) float32 {
	q = q[:len(x)]
	if m == 0 {
		clear(q)
		return 0
	}
	maxv := math.Float32frombits(m)
	scale := blockScale(maxv)
	if scale == 0 {
		clear(q)
		return 0
	}
	r := 127 / float64(maxv)
	for i, v := range x {
		u := float64(rng.Uint64()>>11) * 0x1p-53
		q[i] = byte(int8(max(-127, min(127, math.Floor(float64(v)*r+u)))))
	}
	return scale
}

// decodeInt8 decodes len(dst) values in block size bs from src, which holds
// the block scales followed by the bytes.
func decodeInt8(dst []float32, src []byte, bs int) {
	nb := (len(dst) + bs - 1) / bs
	dequantizeInt8(dst, src[:4*nb], src[4*nb:], bs)
}

// dequantizeInt8 decodes len(dst) values from block scales and bytes q.
func dequantizeInt8(dst []float32, scales, q []byte, bs int) {
	q = q[:len(dst)]
	for b := 0; b*bs < len(dst); b++ {
		lo := b * bs
		hi := min(lo+bs, len(dst))
		scale := math.Float32frombits(binary.LittleEndian.Uint32(scales[4*b:]))
		dequantize(dst[lo:hi], q[lo:hi], scale)
	}
}

// dequantize sets dst[i] = int8(q[i])·scale.
func dequantize(dst []float32, q []byte, scale float32) {
	q = q[:len(dst)]
	i := 0
	for ; i+8 <= len(dst); i += 8 {
		d := dst[i : i+8 : i+8]
		s := q[i : i+8 : i+8]
		d[0] = float32(int8(s[0])) * scale
		d[1] = float32(int8(s[1])) * scale
		d[2] = float32(int8(s[2])) * scale
		d[3] = float32(int8(s[3])) * scale
		d[4] = float32(int8(s[4])) * scale
		d[5] = float32(int8(s[5])) * scale
		d[6] = float32(int8(s[6])) * scale
		d[7] = float32(int8(s[7])) * scale
	}
	for ; i < len(dst); i++ {
		dst[i] = float32(int8(q[i])) * scale
	}
}
