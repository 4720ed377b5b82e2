package dp

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
)

// AdaptiveClipConfig configures AdaptiveClip. The zero value of each field
// means the documented default, the settings of Andrew et al. 2021.
type AdaptiveClipConfig struct {
	// InitialClip is the clip norm C of the first round. If zero, 0.1.
	InitialClip float64
	// TargetQuantile γ ∈ (0, 1) is the fraction of client updates that
	// should be left unclipped. If zero, 0.5 (the median).
	TargetQuantile float64
	// LearningRate η_C > 0 of the geometric update. If zero, 0.2.
	LearningRate float64
	// BitNoise σ_b ≥ 0 is the standard deviation of the Gaussian noise the
	// server adds to the sum of clip bits. Zero adds none: use that only
	// when the bits were already noised (for example by distributed noise on
	// that coordinate of the secure sum); otherwise the clip norm leaks the
	// bits. The paper suggests the expected number of clients per round / 20.
	BitNoise float64
	// MinClip and MaxClip bound C; zero means no bound.
	MinClip, MaxClip float64
}

// AdaptiveClip tracks the clip norm C by the quantile method of Andrew et
// al. 2021, "Differentially Private Learning with Adaptive Clipping": each
// round every client reports ClipBit(||Δ_i||, C), the sum goes through the
// secure aggregation like any other coordinate, and the server moves C
// geometrically towards the γ-quantile of the update norms:
//
//	b̄ = (Σ_i (b_i − ½) + N(0, σ_b²)) / n + ½,   C ← C·exp(−η_C·(b̄ − γ)).
//
// The released C is differentially private through σ_b; see
// UpdateNoiseMultiplier for how to split the noise budget between the bits
// and the model update. The state is small and serialisable for the
// coordinator's replicated state (MarshalBinary).
type AdaptiveClip struct {
	cfg    AdaptiveClipConfig
	clip   float64
	rounds uint64
}

// Validate reports whether the configuration (with defaults filled in) is
// usable.
func (c AdaptiveClipConfig) Validate() error {
	c = c.withDefaults()
	switch {
	case !(c.InitialClip > 0) || math.IsInf(c.InitialClip, 0):
		return fmt.Errorf("dp.AdaptiveClipConfig: initial clip %v: %w", c.InitialClip, ErrInvalidArgument)
	case !(c.TargetQuantile > 0 && c.TargetQuantile < 1):
		return fmt.Errorf("dp.AdaptiveClipConfig: target quantile %v: %w", c.TargetQuantile, ErrInvalidArgument)
	case !(c.LearningRate > 0) || math.IsInf(c.LearningRate, 0):
		return fmt.Errorf("dp.AdaptiveClipConfig: learning rate %v: %w", c.LearningRate, ErrInvalidArgument)
	case !(c.BitNoise >= 0) || math.IsInf(c.BitNoise, 0):
		return fmt.Errorf("dp.AdaptiveClipConfig: bit noise %v: %w", c.BitNoise, ErrInvalidArgument)
	case !(c.MinClip >= 0) || !(c.MaxClip >= 0) || math.IsInf(c.MinClip, 0) || math.IsInf(c.MaxClip, 0):
		return fmt.Errorf("dp.AdaptiveClipConfig: clip bounds [%v, %v]: %w", c.MinClip, c.MaxClip, ErrInvalidArgument)
	case c.MaxClip > 0 && c.MinClip > c.MaxClip:
		return fmt.Errorf("dp.AdaptiveClipConfig: min clip %v above max clip %v: %w", c.MinClip, c.MaxClip, ErrInvalidArgument)
	}
	return nil
}

func (c AdaptiveClipConfig) withDefaults() AdaptiveClipConfig {
	if c.InitialClip == 0 {
		c.InitialClip = 0.1
	}
	if c.TargetQuantile == 0 {
		c.TargetQuantile = 0.5
	}
	if c.LearningRate == 0 {
		c.LearningRate = 0.2
	}
	return c
}

// NewAdaptiveClip returns the adaptive clipping state at round 0.
func NewAdaptiveClip(cfg AdaptiveClipConfig) (*AdaptiveClip, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("dp.NewAdaptiveClip: %w", err)
	}
	cfg = cfg.withDefaults()
	a := &AdaptiveClip{cfg: cfg}
	a.clip = a.bound(cfg.InitialClip)
	return a, nil
}

// Config returns the configuration with defaults filled in.
func (a *AdaptiveClip) Config() AdaptiveClipConfig { return a.cfg }

// Clip returns the current clip norm C, the one clients use this round.
func (a *AdaptiveClip) Clip() float64 { return a.clip }

// Rounds returns how many updates have been applied.
func (a *AdaptiveClip) Rounds() uint64 { return a.rounds }

// Update applies one round: sumBits is the (securely summed) total of the n
// clients' ClipBit values. When BitNoise > 0 the server draws N(0, σ_b²)
// from src and adds it to the sum; src may be nil only when BitNoise is 0.
// It returns the clip norm for the next round.
func (a *AdaptiveClip) Update(sumBits float64, n int, src rand.Source) (float64, error) {
	if n < 1 {
		return a.clip, fmt.Errorf("dp.AdaptiveClip.Update: %d clients: %w", n, ErrInvalidArgument)
	}
	if math.IsNaN(sumBits) || math.IsInf(sumBits, 0) {
		return a.clip, fmt.Errorf("dp.AdaptiveClip.Update: bit sum %v: %w", sumBits, ErrInvalidArgument)
	}
	var noise float64
	if a.cfg.BitNoise > 0 {
		if src == nil {
			return a.clip, fmt.Errorf("dp.AdaptiveClip.Update: bit noise %v needs a random source: %w", a.cfg.BitNoise, ErrInvalidArgument)
		}
		noise = rand.New(src).NormFloat64() * a.cfg.BitNoise
	}
	frac := (sumBits+noise)/float64(n) + 0.5
	frac = math.Min(math.Max(frac, 0), 1)
	a.clip = a.bound(a.clip * math.Exp(-a.cfg.LearningRate*(frac-a.cfg.TargetQuantile)))
	a.rounds++
	return a.clip, nil
}

func (a *AdaptiveClip) bound(c float64) float64 {
	if a.cfg.MinClip > 0 && c < a.cfg.MinClip {
		c = a.cfg.MinClip
	}
	if a.cfg.MaxClip > 0 && c > a.cfg.MaxClip {
		c = a.cfg.MaxClip
	}
	// exp of a clamped argument keeps c positive and finite, but guard the
	// extremes of repeated updates all the same.
	return math.Min(math.Max(c, math.SmallestNonzeroFloat64), math.MaxFloat64)
}

// UpdateNoiseMultiplier returns the noise multiplier z_Δ to use on the model
// update when the clip bits carry noise σ_b, such that the round as a whole
// (update and bits) is a Gaussian mechanism with noise multiplier z
// (Andrew et al. 2021, Thm. 1, with centred bits of sensitivity ½):
//
//	z_Δ = (z^−2 − (2σ_b)^−2)^−½.
//
// Charge z to the accountant. It fails unless 2σ_b > z: the bits alone would
// spend more than the whole budget.
func UpdateNoiseMultiplier(z, bitNoise float64) (float64, error) {
	if !(z > 0) || math.IsInf(z, 0) || !(bitNoise >= 0) {
		return 0, fmt.Errorf("dp.UpdateNoiseMultiplier: z %v, bit noise %v: %w", z, bitNoise, ErrInvalidArgument)
	}
	if math.IsInf(bitNoise, 1) {
		return z, nil
	}
	if 2*bitNoise <= z {
		return 0, fmt.Errorf("dp.UpdateNoiseMultiplier: bit noise %v must exceed z/2 = %v: %w", bitNoise, z/2, ErrInvalidArgument)
	}
	inv := 1/(z*z) - 1/(4*bitNoise*bitNoise)
	return 1 / math.Sqrt(inv), nil
}

// adaptiveClipMagic starts an encoded AdaptiveClip; the byte after it is the
// encoding version.
const (
	adaptiveClipMagic   = "FDPC"
	adaptiveClipVersion = 1
	adaptiveClipSize    = 4 + 1 + 7*8 + 8
)

// MarshalBinary encodes the state (configuration, current clip, rounds) in a
// fixed 69-byte little-endian layout: "FDPC", version 1, then the float64
// fields InitialClip, TargetQuantile, LearningRate, BitNoise, MinClip,
// MaxClip, clip, and the uint64 round count.
func (a *AdaptiveClip) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, adaptiveClipSize)
	b = append(b, adaptiveClipMagic...)
	b = append(b, adaptiveClipVersion)
	for _, f := range []float64{a.cfg.InitialClip, a.cfg.TargetQuantile, a.cfg.LearningRate,
		a.cfg.BitNoise, a.cfg.MinClip, a.cfg.MaxClip, a.clip} {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(f))
	}
	b = binary.LittleEndian.AppendUint64(b, a.rounds)
	return b, nil
}

// UnmarshalBinary decodes the output of MarshalBinary. It validates every
// field and leaves a unchanged on error (wrapping ErrCorrupt).
func (a *AdaptiveClip) UnmarshalBinary(data []byte) error {
	if len(data) != adaptiveClipSize || string(data[:4]) != adaptiveClipMagic {
		return fmt.Errorf("dp.AdaptiveClip.UnmarshalBinary: bad length %d or magic: %w", len(data), ErrCorrupt)
	}
	if data[4] != adaptiveClipVersion {
		return fmt.Errorf("dp.AdaptiveClip.UnmarshalBinary: version %d: %w", data[4], ErrCorrupt)
	}
	var f [7]float64
	for i := range f {
		f[i] = math.Float64frombits(binary.LittleEndian.Uint64(data[5+8*i:]))
	}
	cfg := AdaptiveClipConfig{InitialClip: f[0], TargetQuantile: f[1], LearningRate: f[2],
		BitNoise: f[3], MinClip: f[4], MaxClip: f[5]}
	if cfg.withDefaults() != cfg {
		return fmt.Errorf("dp.AdaptiveClip.UnmarshalBinary: unset field: %w", ErrCorrupt)
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("dp.AdaptiveClip.UnmarshalBinary: %w: %w", ErrCorrupt, err)
	}
	clip := f[6]
	if !(clip > 0) || math.IsInf(clip, 0) {
		return fmt.Errorf("dp.AdaptiveClip.UnmarshalBinary: clip %v: %w", clip, ErrCorrupt)
	}
	if (cfg.MinClip > 0 && clip < cfg.MinClip) || (cfg.MaxClip > 0 && clip > cfg.MaxClip) {
		return fmt.Errorf("dp.AdaptiveClip.UnmarshalBinary: clip %v outside bounds: %w", clip, ErrCorrupt)
	}
	a.cfg, a.clip = cfg, clip
	a.rounds = binary.LittleEndian.Uint64(data[5+8*7:])
	return nil
}

// BitCoordinateScale returns β, the factor by which each agent multiplies its
// ClipBit before appending it to the update vector when the bits ride in the
// same securely summed vector as the update and get the same distributed
// noise, of standard deviation updateNoiseMultiplier·clip per coordinate:
// dividing the decoded bit coordinate by β gives Σ_i ClipBit_i plus Gaussian
// noise of standard deviation bitNoise, ready for AdaptiveClip.Update with a
// zero BitNoise in its config. β = z_Δ·C/σ_b. The vector's L2 sensitivity
// is then sqrt(C² + β²/4), which is exactly what UpdateNoiseMultiplier
// accounts for: charge the z it was given. Apply ClipL2 to the update before
// appending the bit, and make sure the encoder's per-coordinate range covers
// β/2.
func BitCoordinateScale(updateNoiseMultiplier, clip, bitNoise float64) (float64, error) {
	if !(updateNoiseMultiplier > 0) || !(clip > 0) || !(bitNoise > 0) ||
		math.IsInf(updateNoiseMultiplier, 0) || math.IsInf(clip, 0) || math.IsInf(bitNoise, 0) {
		return 0, fmt.Errorf("dp.BitCoordinateScale: z %v, clip %v, bit noise %v: %w",
			updateNoiseMultiplier, clip, bitNoise, ErrInvalidArgument)
	}
	return updateNoiseMultiplier * clip / bitNoise, nil
}
