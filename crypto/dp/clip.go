package dp

import "math"

// clipShrink is the relative margin taken off the clipping factor so that the
// float32 products, each rounded by at most 2^−24 relative, cannot push the
// clipped norm above c; it also covers the float64 error of the norm itself
// for vectors of up to ~10^8 elements.
const clipShrink = 1 - 0x1p-22

// L2Norm returns the Euclidean norm of v, accumulated in float64. Squares of
// float32 values (at most 1.2e77) cannot overflow a float64 sum, so no
// rescaling is needed; a NaN or ±Inf element gives a NaN or +Inf norm.
func L2Norm(v []float32) float64 {
	// Four independent accumulators break the add latency chain.
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(v); i += 4 {
		a, b, c, d := float64(v[i]), float64(v[i+1]), float64(v[i+2]), float64(v[i+3])
		s0 += a * a
		s1 += b * b
		s2 += c * c
		s3 += d * d
	}
	for ; i < len(v); i++ {
		a := float64(v[i])
		s0 += a * a
	}
	return math.Sqrt((s0 + s1) + (s2 + s3))
}

// ClipL2 scales v in place so that its L2 norm is at most c, and returns the
// factor applied (1 when ||v|| ≤ c already). The factor is c/||v|| shrunk by
// a relative 2^−22, so that float32 rounding cannot leave the clipped norm
// above c; the bound c is the L2 sensitivity the noise is calibrated to, so
// it must hold exactly.
//
// Anything that would make the bound doubtful is clipped to zero, the only
// choice that keeps the sensitivity: a c that is negative or NaN, and a v
// containing NaN or ±Inf (v is zeroed and 0 returned). c = +Inf clips nothing.
func ClipL2(v []float32, c float64) (scale float64) {
	if !(c >= 0) {
		c = 0
	}
	norm := L2Norm(v)
	if math.IsNaN(norm) || math.IsInf(norm, 0) {
		clear(v)
		return 0
	}
	if norm <= c {
		return 1
	}
	scale = c / norm * clipShrink
	s := float32(scale)
	if float64(s) > scale {
		s = math.Nextafter32(s, 0)
	}
	for i := range v {
		v[i] *= s
	}
	return float64(s)
}

// ClipBit is the value one client reports for adaptive clipping (Andrew et
// al. 2021): +½ when its update norm is at most the current clip, −½
// otherwise. It is b − ½ for the paper's bit b = [norm ≤ clip]; centring
// makes one client's contribution ±½, the sensitivity the paper's noise
// calibration assumes. Send it as one more coordinate of the securely summed
// vector and pass the sum to AdaptiveClip.Update.
func ClipBit(norm, clip float64) float64 {
	if norm <= clip {
		return 0.5
	}
	return -0.5
}
