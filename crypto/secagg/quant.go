package secagg

import (
	"fmt"
	"math"
	"math/rand/v2"
	"unsafe"
)

// Quantizer encodes float32 vectors into the ring Z_(2^32) that SecAgg sums,
// and decodes the sum.
//
// Encoding of a client's vector x with weight w (its example count):
//
//	z_i = (w / W) * clip(x_i, -Clip, Clip)        W = max(MaxWeight, 1)
//	q_i = stochastic_round(z_i / Clip * L)        L = 2^(Bits-1) - 1
//	encoded = [q_0 .. q_(d-1) mod 2^32, w]        length d+1
//
// so |q_i| <= L and the stochastic rounding is unbiased: E[q_i] = z_i*L/Clip.
// The last coordinate carries w itself, exactly. Summed over clients, the
// first d coordinates, read as signed int32, give sum_u w_u x_u * L/(W*Clip),
// and the last gives sum_u w_u, so the server computes a weighted mean
// (FedAvg) without seeing any single weight. With MaxWeight = 0 the encoding
// is unweighted: w is 0 or 1 and the last coordinate counts the clients.
//
// Check(n) refuses parameters under which n summands could overflow:
// n*L must fit in int32 and n*W in uint32.
type Quantizer struct {
	// Clip is c > 0: every coordinate is clipped to [-c, c] first.
	Clip float32
	// Bits is b in [2, 31]: a coordinate takes 2^b - 1 levels, -L..L.
	Bits int
	// MaxWeight is the largest weight a client may send (0 = unweighted).
	MaxWeight uint32
}

func (q *Quantizer) levels() float64 { return float64(uint32(1)<<(q.Bits-1) - 1) }

func (q *Quantizer) maxWeight() uint32 { return max(q.MaxWeight, 1) }

// Check validates the parameters for n summands, wrapping ErrOverflow when
// the sum could wrap around and ErrInvalidConfig when they are out of range.
func (q *Quantizer) Check(n int) error {
	if !(q.Clip > 0) || math.IsInf(float64(q.Clip), 0) {
		return fmt.Errorf("secagg.Quantizer.Check: %w: Clip %v must be positive and finite", ErrInvalidConfig, q.Clip)
	}
	if q.Bits < 2 || q.Bits > 31 {
		return fmt.Errorf("secagg.Quantizer.Check: %w: Bits %d, want 2..31", ErrInvalidConfig, q.Bits)
	}
	if n < 1 {
		return fmt.Errorf("secagg.Quantizer.Check: %w: %d summands", ErrInvalidConfig, n)
	}
	if uint64(n)*uint64(q.levels()) > math.MaxInt32 {
		return fmt.Errorf("secagg.Quantizer.Check: %w: %d summands of %d bits exceed int32", ErrOverflow, n, q.Bits)
	}
	if uint64(n)*uint64(q.maxWeight()) > math.MaxUint32 {
		return fmt.Errorf("secagg.Quantizer.Check: %w: %d summands of weight up to %d exceed uint32", ErrOverflow, n, q.maxWeight())
	}
	return nil
}

// EncodedLen returns the ring dimension for a d-dimensional vector: d+1.
func (q *Quantizer) EncodedLen(d int) int { return d + 1 }

// Encode writes the encoding of x with the given weight into dst, which must
// have length EncodedLen(len(x)). rng drives the stochastic rounding; seed it
// from a secure source in production (e.g. rand.NewChaCha8 with a seed from
// crypto/rand). NaN coordinates encode as 0.
func (q *Quantizer) Encode(dst []uint32, x []float32, weight uint32, rng *rand.Rand) error {
	if err := q.Check(1); err != nil {
		return fmt.Errorf("secagg.Quantizer.Encode: %w", err)
	}
	if len(dst) != q.EncodedLen(len(x)) {
		return fmt.Errorf("secagg.Quantizer.Encode: %w: dst has %d elements, want %d", ErrMalformed, len(dst), q.EncodedLen(len(x)))
	}
	if weight > q.maxWeight() {
		return fmt.Errorf("secagg.Quantizer.Encode: %w: weight %d above MaxWeight %d", ErrOverflow, weight, q.maxWeight())
	}
	c := float64(q.Clip)
	L := q.levels()
	scale := float64(weight) / float64(q.maxWeight()) * L / c
	for i, v := range x {
		f := float64(v)
		switch {
		case f != f:
			f = 0
		case f > c:
			f = c
		case f < -c:
			f = -c
		}
		z := f * scale // in [-L, L]
		fl := math.Floor(z)
		if rng.Float64() < z-fl {
			fl++
		}
		fl = min(max(fl, -L), L) // guards the last ulp of f*scale
		dst[i] = uint32(int32(fl))
	}
	dst[len(x)] = weight
	return nil
}

// DecodeSum decodes the ring sum of encodings into dst (length
// len(sum)-1): dst_i = sum_u w_u x_u, up to quantization error. It returns
// the total weight sum_u w_u.
func (q *Quantizer) DecodeSum(dst []float32, sum []uint32) (totalWeight uint32, err error) {
	w, err := q.decode(dst, sum, false)
	if err != nil {
		return 0, fmt.Errorf("secagg.Quantizer.DecodeSum: %w", err)
	}
	return w, nil
}

func (q *Quantizer) decode(dst []float32, sum []uint32, mean bool) (uint32, error) {
	if err := q.Check(1); err != nil {
		return 0, err
	}
	if len(sum) < 1 || len(dst) != len(sum)-1 {
		return 0, fmt.Errorf("%w: dst has %d elements for a sum of %d", ErrMalformed, len(dst), len(sum))
	}
	w := sum[len(sum)-1]
	f := float64(q.Clip) * float64(q.maxWeight()) / q.levels()
	if mean {
		if w == 0 {
			return 0, fmt.Errorf("%w: total weight is zero", ErrMalformed)
		}
		f /= float64(w)
	}
	for i := range dst {
		dst[i] = float32(float64(int32(sum[i])) * f)
	}
	return w, nil
}

// DecodeMean decodes the ring sum into the weighted mean
// sum_u w_u x_u / sum_u w_u and returns the total weight. A total weight of
// zero is an error (nothing to average).
func (q *Quantizer) DecodeMean(dst []float32, sum []uint32) (totalWeight uint32, err error) {
	w, err := q.decode(dst, sum, true)
	if err != nil {
		return 0, fmt.Errorf("secagg.Quantizer.DecodeMean: %w", err)
	}
	return w, nil
}

// DecodeMeanInPlace is DecodeMean into the sum's own memory: the mean's
// len(sum)-1 float32 coordinates overwrite the sum's first words (4 bytes
// each, coordinate i over word i, each read before it is written), so the
// decoding needs no second vector. It returns that view of sum; sum holds
// no ring elements afterwards.
func (q *Quantizer) DecodeMeanInPlace(sum []uint32) (mean []float32, totalWeight uint32, err error) {
	if len(sum) < 1 {
		return nil, 0, fmt.Errorf("secagg.Quantizer.DecodeMeanInPlace: %w: empty sum", ErrMalformed)
	}
	mean = unsafe.Slice((*float32)(unsafe.Pointer(unsafe.SliceData(sum))), len(sum)-1)
	w, err := q.decode(mean, sum, true)
	if err != nil {
		return nil, 0, fmt.Errorf("secagg.Quantizer.DecodeMeanInPlace: %w", err)
	}
	return mean, w, nil
}
