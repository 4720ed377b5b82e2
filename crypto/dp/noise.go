package dp

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// AddNoiseFixedPoint adds independent discrete Gaussian noise N_Z(0,
// sigmaUnits²) to every element of dst, wrapping modulo 2^32: dst holds a
// fixed-point vector in Z_(2^32) (the secure-aggregation encoding) and
// sigmaUnits is the noise standard deviation in quantisation steps (see
// AgentSigmaUnits). Because the noise is an integer drawn exactly, it adds no
// rounding bias, and the modular sum of all agents' vectors carries the sum of
// their noise. src should be a cryptographic source (NewCryptoSource).
func AddNoiseFixedPoint(dst []uint32, sigmaUnits float64, src rand.Source) error {
	g, err := NewDiscreteGaussian(sigmaUnits)
	if err != nil {
		return fmt.Errorf("dp.AddNoiseFixedPoint: %w", err)
	}
	if g.zero {
		return nil
	}
	for i := range dst {
		dst[i] += uint32(g.Sample(src)) // two's complement wraps mod 2^32
	}
	return nil
}

// AgentSigmaUnits returns the discrete Gaussian σ, in quantisation steps,
// that each agent adds so that the secure sum carries noise of standard
// deviation noiseMultiplier·sensitivity even when only minSurvivors agents
// survive: each adds variance (z·Δ)²/minSurvivors, so n ≥ minSurvivors
// agents together add at least (z·Δ)². sensitivity is the L2 bound of one
// agent's contribution and scale the number of quantisation steps per unit
// (a value v is encoded as round(v·scale)); the sensitivity in steps,
// sensitivity·scale, should already include the inflation by stochastic
// rounding (see RoundedNormBound).
func AgentSigmaUnits(noiseMultiplier, sensitivity, scale float64, minSurvivors int) (float64, error) {
	switch {
	case !(noiseMultiplier >= 0) || math.IsInf(noiseMultiplier, 0):
		return 0, fmt.Errorf("dp.AgentSigmaUnits: noise multiplier %v: %w", noiseMultiplier, ErrInvalidArgument)
	case !(sensitivity >= 0) || math.IsInf(sensitivity, 0):
		return 0, fmt.Errorf("dp.AgentSigmaUnits: sensitivity %v: %w", sensitivity, ErrInvalidArgument)
	case !(scale > 0) || math.IsInf(scale, 0):
		return 0, fmt.Errorf("dp.AgentSigmaUnits: scale %v: %w", scale, ErrInvalidArgument)
	case minSurvivors < 1:
		return 0, fmt.Errorf("dp.AgentSigmaUnits: minSurvivors %d: %w", minSurvivors, ErrInvalidArgument)
	}
	s := noiseMultiplier * sensitivity * scale / math.Sqrt(float64(minSurvivors))
	if s > MaxSigma {
		return 0, fmt.Errorf("dp.AgentSigmaUnits: sigma %v steps exceeds MaxSigma: %w", s, ErrInvalidArgument)
	}
	return s, nil
}

// RoundedNormBound bounds the L2 norm, in quantisation steps, of a vector of
// dimension d and norm at most normUnits (already multiplied by the scale)
// after unbiased stochastic rounding to integers: with probability at least
// 1 − beta the rounded norm is at most
//
//	sqrt(normUnits² + d/4 + sqrt(2·ln(1/β))·(normUnits + sqrt(d)/2)),
//
// and it is never more than normUnits + sqrt(d). This is the bound of
// Kairouz, Liu & Steinke 2021 ("The Distributed Discrete Gaussian Mechanism
// for Federated Learning with Secure Aggregation", Thm. 1 / conditional
// randomized rounding): an encoder that re-draws the rounding until the norm
// meets the bound (probability ≥ 1 − beta each draw) makes the returned value
// the exact sensitivity in steps. beta = 0 returns the deterministic bound.
func RoundedNormBound(normUnits float64, d int, beta float64) (float64, error) {
	if !(normUnits >= 0) || math.IsInf(normUnits, 0) || d < 0 || !(beta >= 0 && beta < 1) {
		return 0, fmt.Errorf("dp.RoundedNormBound: norm %v, d %d, beta %v: %w", normUnits, d, beta, ErrInvalidArgument)
	}
	sd := math.Sqrt(float64(d))
	hard := normUnits + sd
	if beta == 0 {
		return hard, nil
	}
	sq := normUnits*normUnits + float64(d)/4 + math.Sqrt(2*math.Log(1/beta))*(normUnits+sd/2)
	return math.Min(math.Sqrt(sq), hard), nil
}

// DistributedTau returns τ = 10·Σ_{k=1}^{n−1} exp(−2π²σ²·k/(k+1)), the
// slack of Kairouz, Liu & Steinke 2021 (Thm. 1, Prop. 14) for a sum of n
// independent N_Z(0, σ²) draws (σ in quantisation steps), which is not itself
// a discrete Gaussian: for a d-dimensional sum with L2 sensitivity Δ steps the
// RDP at order α is at most
//
//	min(α·Δ²/(2nσ²) + τ·d, (α/2)·(Δ/sqrt(nσ²) + τ·sqrt(d))²).
//
// The accountant in this package charges the first term only, as for a
// continuous Gaussian. τ is about 6e−31·(n−1) at σ = 2.7 steps but
// 5e−4·(n−1) at σ = 1, so choose the fixed-point scale such that
// AgentSigmaUnits is at least 3 and τ·d stays negligible.
func DistributedTau(sigmaUnits float64, n int) float64 {
	c := 2 * math.Pi * math.Pi * sigmaUnits * sigmaUnits
	const exact = 1 << 16 // terms summed one by one; the rest bounded above
	var tau float64
	k := 1
	for ; k < n && k <= exact; k++ {
		tau += math.Exp(-c * float64(k) / float64(k+1))
	}
	if k < n {
		// The terms decrease in k, so each remaining one is at most the last.
		tau += float64(n-k) * math.Exp(-c*float64(k-1)/float64(k))
	}
	return 10 * tau
}

// NoiseTailBound returns B such that the sum of n independent N_Z(0, σ²)
// draws (σ = sigmaUnits) exceeds B in absolute value with probability at
// most tail: discrete Gaussians are σ-sub-Gaussian (Canonne et al. 2020), so
// B = σ·sqrt(2n·ln(2/tail)). Use it to leave headroom in Z_(2^32): the
// noised sum must stay inside the signed range the decoder reads, so
// n·L + NoiseTailBound(σ_u, n, 2^−40) must fit in int32 for L the
// largest encoded magnitude per agent.
func NoiseTailBound(sigmaUnits float64, n int, tail float64) (float64, error) {
	if !(sigmaUnits >= 0) || math.IsInf(sigmaUnits, 0) || n < 0 || !(tail > 0 && tail < 1) {
		return 0, fmt.Errorf("dp.NoiseTailBound: sigma %v, n %d, tail %v: %w", sigmaUnits, n, tail, ErrInvalidArgument)
	}
	return sigmaUnits * math.Sqrt(2*float64(n)*math.Log(2/tail)), nil
}
