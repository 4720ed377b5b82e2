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
