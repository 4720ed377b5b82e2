package dp

import (
	"math"
)

// This file computes the Rényi differential privacy of one step of the
// Poisson-subsampled Gaussian mechanism (SGM), following Mironov, Talwar &
// Zhang 2019, "Rényi Differential Privacy of the Sampled Gaussian Mechanism".
// With μ0 = N(0, σ²), μ1 = N(1, σ²) and μ = (1−q)·μ0 + q·μ1, the RDP at order
// α is ε(α) = log(A_α)/(α−1) with
//
//	A_α = E_{z∼μ0}[(μ(z)/μ0(z))^α],
//
// the direction D_α(μ‖μ0), which the paper shows dominates D_α(μ0‖μ).

// maxSeriesTerms caps the series for fractional orders; an order whose
// series has not converged by then is reported as +Inf (never chosen).
const maxSeriesTerms = 1 << 17

// rdpSampledGaussian returns ε(α) for one SGM step with sampling rate q and
// noise multiplier sigma (noise standard deviation / L2 sensitivity).
// Arguments are assumed validated: q ∈ [0, 1], sigma ≥ 0, alpha > 1.
func rdpSampledGaussian(q, sigma, alpha float64) float64 {
	switch {
	case q == 0:
		return 0
	case sigma == 0:
		return math.Inf(1)
	case q == 1:
		return alpha / (2 * sigma * sigma)
	case alpha == math.Trunc(alpha) && alpha <= 1<<20:
		return logAInt(q, sigma, int(alpha)) / (alpha - 1)
	default:
		return logAFrac(q, sigma, alpha) / (alpha - 1)
	}
}

// logAInt computes log A_α for integer α by the binomial expansion of
// ((1−q) + q·μ1/μ0)^α: E_{μ0}[(μ1/μ0)^k] = exp((k²−k)/(2σ²)), so
//
//	A_α = Σ_{k=0}^{α} C(α,k)·(1−q)^{α−k}·q^k·exp((k²−k)/(2σ²)),
//
// a sum of positive terms, added in log space.
func logAInt(q, sigma float64, alpha int) float64 {
	lq, l1q := math.Log(q), math.Log1p(-q)
	s2 := 2 * sigma * sigma
	acc := math.Inf(-1)
	for k := 0; k <= alpha; k++ {
		fk := float64(k)
		term := logBinomInt(alpha, k) + fk*lq + float64(alpha-k)*l1q + (fk*fk-fk)/s2
		acc = logAdd(acc, term)
	}
	return acc
}

// logAFrac computes log A_α for fractional α. Split the integral at z0, where
// q·μ1(z) = (1−q)·μ0(z), i.e. z0 = σ²·log(1/q − 1) + ½. On each side one of
// the two mixture components dominates, so the generalised binomial series
// of (x + y)^α converges there. Below z0 (expanding in powers of q·μ1):
//
//	Σ_i C(α,i)·(1−q)^{α−i}·q^i·exp((i²−i)/(2σ²))·P(N(i, σ²) ≤ z0),
//
// and above z0 (expanding in powers of (1−q)·μ0, with j = α − i):
//
//	Σ_i C(α,i)·q^{α−i}·(1−q)^i·exp((j²−j)/(2σ²))·P(N(j, σ²) > z0),
//
// because ∫ μ0^{1−k}·μ1^k over a half-line is exp((k²−k)/(2σ²)) times the mass
// of N(k, σ²) on it. The generalised coefficients C(α,i) change sign past
// i = ⌈α⌉, so positive and negative terms are summed apart in log space.
func logAFrac(q, sigma, alpha float64) float64 {
	lq, l1q := math.Log(q), math.Log1p(-q)
	s2 := 2 * sigma * sigma
	z0 := sigma*sigma*(math.Log(1/q-1)) + 0.5
	sq := math.Sqrt2 * sigma
	pos, neg := math.Inf(-1), math.Inf(-1)
	// log|C(α,i)| and its sign, updated by C(α,i+1) = C(α,i)·(α−i)/(i+1).
	logCoef, positive := 0.0, true
	for i := 0; i < maxSeriesTerms; i++ {
		fi := float64(i)
		j := alpha - fi
		t0 := logCoef + fi*lq + j*l1q + (fi*fi-fi)/s2 + logHalfErfc((fi-z0)/sq)
		t1 := logCoef + j*lq + fi*l1q + (j*j-j)/s2 + logHalfErfc((z0-j)/sq)
		if positive {
			pos = logAdd(pos, logAdd(t0, t1))
		} else {
			neg = logAdd(neg, logAdd(t0, t1))
		}
		if fi > alpha && math.Max(t0, t1) < pos-36 {
			return logSub(pos, neg)
		}
		logCoef += math.Log(math.Abs(j)) - math.Log(fi+1)
		if j < 0 {
			positive = !positive
		}
	}
	return math.Inf(1)
}

// logBinomInt returns log C(n, k) for 0 ≤ k ≤ n.
func logBinomInt(n, k int) float64 {
	a, _ := math.Lgamma(float64(n + 1))
	b, _ := math.Lgamma(float64(k + 1))
	c, _ := math.Lgamma(float64(n - k + 1))
	return a - b - c
}

// logAdd returns log(e^a + e^b).
func logAdd(a, b float64) float64 {
	if a < b {
		a, b = b, a
	}
	if math.IsInf(b, -1) {
		return a
	}
	return a + math.Log1p(math.Exp(b-a))
}

// logSub returns log(e^a − e^b) for a ≥ b (−Inf when they are equal).
func logSub(a, b float64) float64 {
	if math.IsInf(b, -1) {
		return a
	}
	if b >= a {
		return math.Inf(-1)
	}
	return a + math.Log(-math.Expm1(b-a))
}

// logHalfErfc returns log(erfc(x)/2) = log P(N(0,1) > x·√2), accurate in the
// far tail where erfc underflows.
func logHalfErfc(x float64) float64 {
	if x < 20 {
		return math.Log(math.Erfc(x)) - math.Ln2
	}
	// Asymptotic series erfc(x) = e^{−x²}/(x√π)·(1 − 1/(2x²) + 3/(4x⁴) − 15/(8x⁶)
	// + 105/(16x⁸)); at x ≥ 20 the omitted terms are below 1e−14 relative.
	r := 1 / (2 * x * x)
	series := 1 - r*(1-3*r*(1-5*r*(1-7*r)))
	return -x*x - math.Log(x) - 0.5*math.Log(math.Pi) + math.Log(series) - math.Ln2
}
