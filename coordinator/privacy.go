package coordinator

import (
	"fmt"
	"math"

	"github.com/fedge/fedge/crypto/dp"
	"github.com/fedge/fedge/crypto/secagg"
	"github.com/fedge/fedge/protocol"
)

// roundPrivacy is what one training round of a job with differential
// privacy needs: the clip norm and noise the agents apply, and, with
// adaptive clipping, the clip state the round moves.
//
// Adaptive clipping (Andrew et al. 2021) rides in the same secure sum as
// the update: each agent inserts β·(b − ½) after its clipped delta, where
// b says whether its update norm was within this round's clip, and noises
// that coordinate like the others. Dividing the decoded coordinate by β
// gives the sum of the centred bits plus Gaussian noise of deviation σ_b,
// so the coordinator never sees an agent's bit, and the clip it publishes
// is private. The round as a whole is a Gaussian mechanism with the job's
// noise multiplier z, which is what the accountant is charged: the update
// gets the slightly larger z_Δ = (z⁻² − (2σ_b)⁻²)^(−½).
type roundPrivacy struct {
	clip     float64          // this round's L2 clip norm C
	updateZ  float64          // noise multiplier on the update, z_Δ (z when not adaptive)
	bitNoise float64          // σ_b of the clip-bit sum (adaptive only)
	adaptive *dp.AdaptiveClip // nil unless adaptive
}

// newRoundPrivacy prepares a round of job that invites expected agents; nil
// when the job runs without differential privacy.
func newRoundPrivacy(job *JobRecord, expected int) (*roundPrivacy, error) {
	d := job.Spec.DP
	if !d.Enabled {
		return nil, nil
	}
	p := &roundPrivacy{clip: d.Clip, updateZ: d.NoiseMultiplier}
	if !d.Adaptive {
		return p, nil
	}
	// The paper's σ_b is the expected number of clients / 20; at least z,
	// so that the bits take at most a quarter of the noise budget.
	p.bitNoise = d.BitNoise
	if p.bitNoise == 0 {
		p.bitNoise = math.Max(float64(expected)/20, d.NoiseMultiplier)
	}
	z, err := dp.UpdateNoiseMultiplier(d.NoiseMultiplier, p.bitNoise)
	if err != nil {
		return nil, fmt.Errorf("coordinator: adaptive clipping: %w", err)
	}
	p.updateZ = z
	ac := &dp.AdaptiveClip{}
	if job.Privacy != nil && len(job.Privacy.Clip) > 0 {
		if err := ac.UnmarshalBinary(job.Privacy.Clip); err != nil {
			return nil, fmt.Errorf("coordinator: adaptive clip state: %w", err)
		}
	} else {
		// The bit coordinate β/2 = z_Δ·C/(2σ_b) must stay inside the
		// fixed-point range of the secure sum: that bounds C.
		maxClip := 2 * p.bitNoise * job.Spec.SecAgg.Clip / z
		if ac, err = dp.NewAdaptiveClip(dp.AdaptiveClipConfig{
			InitialClip: math.Min(d.Clip, maxClip), TargetQuantile: d.TargetQuantile, MaxClip: maxClip,
		}); err != nil {
			return nil, fmt.Errorf("coordinator: adaptive clipping: %w", err)
		}
	}
	p.adaptive = ac
	p.clip = ac.Clip()
	return p, nil
}

// extra is the number of coordinates the round adds after the delta.
func (p *roundPrivacy) extra() int {
	if p != nil && p.adaptive != nil {
		return 1
	}
	return 0
}

// bitScale is β = z_Δ·C/σ_b.
func (p *roundPrivacy) bitScale() float64 { return p.updateZ * p.clip / p.bitNoise }

// params returns the plan's DP parameters when at least minSurvivors
// agents' noise will be in the sum.
func (p *roundPrivacy) params(minSurvivors int) protocol.DPParams {
	out := protocol.DPParams{
		ClipNorm:    p.clip,
		NoiseStdDev: p.updateZ * p.clip / math.Sqrt(float64(max(minSurvivors, 1))),
	}
	if p.adaptive != nil {
		out.Adaptive, out.BitScale = true, p.bitScale()
	}
	return out
}

// observe takes the aggregated mean of the delta and the extra coordinates
// over n survivors (an unweighted mean: DP rounds weigh agents equally),
// moves the adaptive clip, and returns the delta alone.
func (p *roundPrivacy) observe(d []float32, n int) ([]float32, error) {
	if p.extra() == 0 {
		return d, nil
	}
	if len(d) < 1 || n < 1 {
		return nil, fmt.Errorf("coordinator: adaptive clipping: %d coordinates from %d agents", len(d), n)
	}
	bits := float64(d[len(d)-1]) * float64(n) / p.bitScale()
	if _, err := p.adaptive.Update(bits, n, nil); err != nil {
		return nil, err
	}
	return d[:len(d)-1], nil
}

// record adds the clip state to the job's privacy account.
func (p *roundPrivacy) record(rec *PrivacyRecord) error {
	if p == nil || rec == nil {
		return nil
	}
	rec.ClipNorm = p.clip
	if p.adaptive != nil {
		b, err := p.adaptive.MarshalBinary()
		if err != nil {
			return err
		}
		rec.Clip, rec.ClipNorm = b, p.adaptive.Clip()
	}
	return nil
}

// noised reports whether agents add noise this round (and so withhold
// their training metrics, which the noise would not cover).
func (p *roundPrivacy) noised() bool { return p != nil && p.updateZ > 0 && p.clip > 0 }

// trainCount is how many of the eligible connected agents a training
// round of spec invites; minN is the least the round can run with.
//
// A job with differential privacy and a fraction samples that fraction
// of the eligible agents (plus over_select) and never more: the sampling
// rate q = invited/eligible is what the accountant charges, and raising
// the count to min_clients when few agents are connected — after a
// leader change, while the fleet reconnects — would raise q towards 1
// and spend the budget several times faster than the job planned. Such
// a round waits (ErrNotEnoughAgents) until the fraction of the eligible
// agents reaches minN. Jobs without DP, or without a fraction, invite
// selectCount's number.
func trainCount(spec *JobSpec, eligible, minN int) (int, error) {
	n := selectCount(spec, eligible)
	if !spec.DP.Enabled || spec.Fraction <= 0 {
		return n, nil
	}
	sampled := int(math.Ceil(math.Ceil(spec.Fraction*float64(eligible)) * (1 + spec.OverSelect)))
	n = min(sampled, eligible)
	if n < minN {
		need := int(math.Ceil(float64(minN) / (spec.Fraction * (1 + spec.OverSelect))))
		return 0, fmt.Errorf("%w: %d of %d (DP: the fraction %.4g of them is %d, below min_clients %d)",
			ErrNotEnoughAgents, eligible, need, spec.Fraction, n, minN)
	}
	return n, nil
}

// dpMinSurvivors makes the round's minimum of agents (minN, min_clients)
// the least number of survivors the secure sum of a DP round may hold, and
// returns cfg resolved again. Each agent adds noise of deviation
// z·C/√m for m that least number, so that the sum holds z·C however many
// drop out; left at the SecAgg+ threshold (8 for a round of 100 agents),
// the sum of a full round carried z·C·√(100/8) ≈ 3.5·z·C while the
// accountant charged z. A round with fewer survivors than minN then fails
// in the secure sum, before anything is revealed.
func dpMinSurvivors(cfg *secagg.Config, resolved secagg.Config, minN int) (secagg.Config, error) {
	cfg.MinSurvivors = max(resolved.Threshold, min(minN, len(cfg.Participants)))
	r, err := cfg.Resolve()
	if err != nil {
		return secagg.Config{}, fmt.Errorf("coordinator.dpMinSurvivors: %w", err)
	}
	return r, nil
}
