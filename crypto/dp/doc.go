// Package dp provides differential privacy for federated rounds: per-client
// L2 clipping (fixed or adaptive), distributed Gaussian noise in the
// fixed-point domain, and an RDP accountant for the subsampled Gaussian
// mechanism.
//
// # A round, end to end
//
// Before training, the coordinator turns the operator's target into a noise
// multiplier z with NewBudget (Params: ε, δ, rounds, sampling rate q; z by
// bisection, NoiseForBudget) and keeps the Budget in its replicated state
// (MarshalBinary). Each round:
//
//  1. every sampled agent clips its update: ClipL2(update, C), with C fixed
//     or from AdaptiveClip.Clip, and, for adaptive clipping, appends
//     ClipBit(norm, C) as one more coordinate;
//  2. the secure-aggregation encoder scales by s steps per unit and rounds
//     stochastically into Z_(2^32); the agent then adds its share of the
//     noise, AddNoiseFixedPoint(encoded, σ_u, src), with
//     σ_u = AgentSigmaUnits(z, Δ, s, n_min): the modular sum of any
//     n ≥ n_min surviving agents carries discrete Gaussian noise of
//     variance at least (z·Δ·s)², i.e. z·Δ after decoding;
//  3. the coordinator calls Budget.Spend(q) before releasing the aggregate
//     (it refuses with ErrBudgetExhausted once the target would be passed)
//     and records the Report; with adaptive clipping it feeds the summed
//     bits to AdaptiveClip.Update.
//
// Δ is the L2 sensitivity in units: C, or the slightly larger
// RoundedNormBound(C·s, d, β)/s when stochastic rounding can inflate norms.
// Pick s so that σ_u ≥ 3: the sum of discrete Gaussians is then a discrete
// Gaussian up to a negligible DistributedTau. Noise widens the range the
// ring must hold: leave NoiseTailBound(σ_u, n, tail) of headroom beyond the
// largest possible sum of encoded values. When the clip bits ride in the
// same noised vector, scale them by BitCoordinateScale and charge the z of
// UpdateNoiseMultiplier.
//
// # Noise
//
// DiscreteGaussian is the exact sampler of Canonne, Kamath & Steinke 2020:
// integer arithmetic only (128-bit, with a math/big fallback), so the noise
// has no floating-point bias or holes. Sources are injected: agents use
// NewCryptoSource (ChaCha8 seeded from crypto/rand); tests use
// NewSeededSource.
//
// # Accounting
//
// Accountant composes RDP of the Poisson-subsampled Gaussian mechanism
// (Mironov, Talwar & Zhang 2019) at a list of orders: closed-form binomial
// sums for integer orders, the paper's convergent two-sided series for
// fractional ones. Epsilon converts with the improved bound of Canonne et al.
// 2020 / Balle et al. 2020; EpsilonClassic gives the classic one. The
// accountant treats each round's noise as a continuous Gaussian of
// multiplier z, which the distributed discrete Gaussian matches when
// σ_u ≥ 3 (see DistributedTau for the exact slack).
//
// Everything here is pure computation: no network, no goroutines, no
// package-level state.
package dp
