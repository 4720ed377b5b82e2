package encoding

import "math"

// LosslessDelta returns the options of a bit-exact model download: the
// Float32XOR codec (XOR against the base's bits when encoding a delta) with
// DEFLATE at LosslessFlateLevel. Encode(next, base, LosslessDelta()) decodes
// against base to exactly next, NaN payloads and signed zeros included; with
// a nil base it is a lossless full encoding. Coordinator and agent use this
// one definition so that both ends agree on what a model push is.
func LosslessDelta() Options {
	return Options{Codec: Float32XOR, Compressor: Flate}
}

// xorChunk is how many elements encodeXOR splits and hashes at a time, so
// that a chunk of params is still in L1 when it is hashed.
const xorChunk = 4096

// putXORPlanesAt writes the float32 bit patterns of p, XORed with those of
// base when base is not nil, into the four byte planes of a body of n
// elements, at element offset lo: planes[lo+i] gets byte 0 (least
// significant) of p[i], planes[n+lo+i] byte 1, planes[2n+lo+i] byte 2 and
// planes[3n+lo+i] byte 3. Consecutive versions of a model share sign,
// exponent and leading mantissa bits, so the high planes of a delta are
// mostly zeros and small values that DEFLATE codes in a few bits per byte.
func putXORPlanesAt(planes []byte, n, lo int, p, base []float32) {
	m := len(p)
	b0 := planes[lo : lo+m]
	b1 := planes[n+lo : n+lo+m]
	b2 := planes[2*n+lo : 2*n+lo+m]
	b3 := planes[3*n+lo : 3*n+lo+m]
	if base == nil {
		for i, v := range p {
			w := math.Float32bits(v)
			b0[i], b1[i], b2[i], b3[i] = byte(w), byte(w>>8), byte(w>>16), byte(w>>24)
		}
		return
	}
	base = base[:m]
	for i, v := range p {
		w := math.Float32bits(v) ^ math.Float32bits(base[i])
		b0[i], b1[i], b2[i], b3[i] = byte(w), byte(w>>8), byte(w>>16), byte(w>>24)
	}
}

// decodeXORPlanes is the inverse of putXORPlanesAt over a whole body: it sets
// dst to the values whose (XORed) bit patterns src holds as four planes of
// len(dst) bytes. base is nil for a full encoding; otherwise it has len(dst)
// elements and must not overlap dst.
func decodeXORPlanes(dst []float32, src []byte, base []float32) {
	n := len(dst)
	src = src[:4*n]
	b0, b1, b2, b3 := src[:n], src[n:2*n], src[2*n:3*n], src[3*n:4*n]
	if base == nil {
		for i := range dst {
			dst[i] = math.Float32frombits(uint32(b0[i]) | uint32(b1[i])<<8 | uint32(b2[i])<<16 | uint32(b3[i])<<24)
		}
		return
	}
	base = base[:n]
	for i := range dst {
		w := uint32(b0[i]) | uint32(b1[i])<<8 | uint32(b2[i])<<16 | uint32(b3[i])<<24
		dst[i] = math.Float32frombits(w ^ math.Float32bits(base[i]))
	}
}
