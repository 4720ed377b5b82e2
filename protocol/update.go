package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/big"
)

// The vector an agent contributes to a training round is its model delta
// followed by UpdateMetrics coordinates of training metrics, so that the
// coordinator learns them only as an example-weighted mean, through the same
// aggregation as the delta:
//
//	[ delta_0 .. delta_(P-1), clip·loss/LossScale, clip·accuracy ]
//
// loss is the agent's mean training loss, accuracy its training accuracy
// in [0,1]; scaling by clip keeps them inside the quantizer's range.
const (
	UpdateMetrics = 2
	LossScale     = 10
)

// ErrBadUpdate is returned for a malformed plain update.
var ErrBadUpdate = errors.New("protocol: malformed plain update")

// AppendUpdateMetrics returns delta with the metric coordinates appended.
func AppendUpdateMetrics(delta []float32, clip, loss, accuracy float64) []float32 {
	return append(delta, float32(clip*math.Min(loss, LossScale)/LossScale), float32(clip*accuracy))
}

// SplitUpdateMetrics splits an aggregated (mean) vector into the delta and
// the mean training loss and accuracy.
func SplitUpdateMetrics(v []float32, clip float64) (delta []float32, loss, accuracy float64) {
	if len(v) < UpdateMetrics || clip == 0 {
		return v, 0, 0
	}
	p := len(v) - UpdateMetrics
	return v[:p], float64(v[p]) / clip * LossScale, float64(v[p+1]) / clip
}

// EncodePlainUpdate lays out an update sent without secure aggregation (only
// for robust strategies, which must see each update): the example weight as
// a little-endian uint32, then the vector as little-endian float32s.
func EncodePlainUpdate(v []float32, weight uint32) []byte {
	b := make([]byte, 4+4*len(v))
	binary.LittleEndian.PutUint32(b, weight)
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4+4*i:], math.Float32bits(x))
	}
	return b
}

// DecodePlainUpdate reverses EncodePlainUpdate, refusing a vector whose
// length is not dim or whose values are not finite.
func DecodePlainUpdate(b []byte, dim int) ([]float32, uint32, error) {
	if len(b) < 4 || (len(b)-4)%4 != 0 || (len(b)-4)/4 != dim {
		return nil, 0, fmt.Errorf("%w: %d bytes for %d values", ErrBadUpdate, len(b), dim)
	}
	v := make([]float32, dim)
	for i := range v {
		x := math.Float32frombits(binary.LittleEndian.Uint32(b[4+4*i:]))
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return nil, 0, fmt.Errorf("%w: value %d is not finite", ErrBadUpdate, i)
		}
		v[i] = x
	}
	return v, binary.LittleEndian.Uint32(b), nil
}

// EvalSums are one model's evaluation figures on an agent's held-out data.
type EvalSums struct {
	Correct, Total uint32
	LossSum        float64
}

// EvalDim is the length of an evaluation vector: candidate then baseline,
// each (correct, total, loss sum in thousandths).
const EvalDim = 6

// EncodeEval lays out an agent's evaluation of the candidate and baseline
// models as exact integers for secure summation. Loss sums are carried in
// thousandths and capped so that 4,096 agents cannot overflow the ring.
func EncodeEval(candidate, baseline EvalSums) []uint32 {
	milli := func(x float64) uint32 {
		const maxMilli = math.MaxUint32 / 4096
		v := math.Round(x * 1000)
		if !(v >= 0) {
			return 0
		}
		return uint32(math.Min(v, maxMilli))
	}
	return []uint32{candidate.Correct, candidate.Total, milli(candidate.LossSum), baseline.Correct, baseline.Total, milli(baseline.LossSum)}
}

// DecodeEval reverses EncodeEval on a (summed) vector.
func DecodeEval(v []uint32) (candidate, baseline EvalSums, err error) {
	if len(v) != EvalDim {
		return candidate, baseline, fmt.Errorf("%w: eval vector of %d values", ErrBadUpdate, len(v))
	}
	candidate = EvalSums{Correct: v[0], Total: v[1], LossSum: float64(v[2]) / 1000}
	baseline = EvalSums{Correct: v[3], Total: v[4], LossSum: float64(v[5]) / 1000}
	return candidate, baseline, nil
}

// Exact sums of real values under secure aggregation. SecAgg sums in
// Z_(2^32), too narrow for totals such as a feature's sum of squares over
// a whole federation, and the Quantizer's clipping would bias them. So a
// value x travels as the fixed-point integer X = round(x·2^FixedFrac), a
// 128-bit two's-complement number split into FixedLimbs 16-bit digits, one
// per ring coordinate. Each coordinate of the sum is then a sum of 16-bit
// digits, which cannot wrap for up to FixedMaxSummands agents, and the
// decoder carries the digits back into one 128-bit total: exact for any
// total below 2^(127-FixedFrac) in magnitude, with a resolution of
// 2^-FixedFrac per agent.
const (
	FixedFrac        = 32
	FixedLimbs       = 8
	FixedMaxSummands = 1 << 16
	// FixedMaxValue bounds |x| (exclusive) for one agent's value, so that
	// the total of FixedMaxSummands agents still fits.
	FixedMaxValue float64 = 1 << (127 - FixedFrac - 16)
)

// FixedLen returns the ring dimension for n values: n·FixedLimbs.
func FixedLen(n int) int { return n * FixedLimbs }

// EncodeFixed lays out vals for an exact secure sum; it refuses a value
// that is not finite or exceeds FixedMaxValue in magnitude.
func EncodeFixed(vals []float64) ([]uint32, error) {
	out := make([]uint32, FixedLen(len(vals)))
	var x, mod big.Int
	mod.Lsh(big.NewInt(1), 16*FixedLimbs)
	mask := big.NewInt(0xFFFF)
	for i, v := range vals {
		if math.IsNaN(v) || math.IsInf(v, 0) || math.Abs(v) >= FixedMaxValue {
			return nil, fmt.Errorf("protocol.EncodeFixed: value %d is %v: %w", i, v, ErrBadUpdate)
		}
		new(big.Float).SetFloat64(math.Round(math.Ldexp(v, FixedFrac))).Int(&x)
		if x.Sign() < 0 {
			x.Add(&x, &mod)
		}
		var d big.Int
		for k := range FixedLimbs {
			d.Rsh(&x, uint(16*k)).And(&d, mask)
			out[i*FixedLimbs+k] = uint32(d.Uint64())
		}
	}
	return out, nil
}

// DecodeFixed turns the secure sum of EncodeFixed vectors back into the
// totals. The float64 results are rounded from the exact 128-bit totals.
func DecodeFixed(sum []uint32) ([]float64, error) {
	if len(sum)%FixedLimbs != 0 {
		return nil, fmt.Errorf("protocol.DecodeFixed: %d coordinates: %w", len(sum), ErrBadUpdate)
	}
	out := make([]float64, len(sum)/FixedLimbs)
	var mod, half big.Int
	mod.Lsh(big.NewInt(1), 16*FixedLimbs)
	half.Rsh(&mod, 1)
	for i := range out {
		var x, d big.Int
		for k := FixedLimbs - 1; k >= 0; k-- {
			x.Lsh(&x, 16)
			x.Add(&x, d.SetUint64(uint64(sum[i*FixedLimbs+k])))
		}
		x.Mod(&x, &mod)
		if x.Cmp(&half) >= 0 {
			x.Sub(&x, &mod)
		}
		f, _ := new(big.Float).SetInt(&x).Float64()
		out[i] = math.Ldexp(f, -FixedFrac)
	}
	return out, nil
}
