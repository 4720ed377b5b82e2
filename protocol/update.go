package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
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
