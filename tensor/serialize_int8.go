package tensor

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
)

// flagInt8 marks a model file whose dense and conv2d weights are stored
// as int8 with one float32 scale per output channel (a model served in
// int8, Spec.Quantize): after the parameter count, each layer's
// parameters in order — for a dense or conv2d layer its k×out weights as
// int8 (row-major, as in Params), its out scales as float32 and its
// biases as float32; for any other layer its parameters as float32. A
// weight w reads as float32(q)·scale. A file without the flag holds every
// parameter as float32; both forms read the same way.
const flagInt8 = 1

// newInt8Model is newModel for a file in the int8 form, which only a
// model served in int8 has.
func newInt8Model(spec Spec) (*Model, error) {
	if spec.Quantize != QuantizeInt8 {
		return nil, fmt.Errorf("int8 parameters for a model not served in int8 (quantize %q): %w", spec.Quantize, ErrFormat)
	}
	return newModel(spec)
}

// int8Columns returns the output channels of layer i when its weights are
// stored as int8 (a dense or conv2d layer), else 0.
func (m *Model) int8Columns(i int) int {
	switch l := m.layers[i].(type) {
	case *dense:
		return m.plans[i].outSize
	case *conv:
		return l.f
	}
	return 0
}

// int8Size is the byte length of the parameters of m stored with int8
// weights.
func (m *Model) int8Size() int64 {
	var n int64
	for i := range m.plans {
		p := &m.plans[i]
		if out := m.int8Columns(i); out > 0 {
			n += int64(p.weights) + 4*int64(out) + 4*int64(p.params-p.weights)
		} else {
			n += 4 * int64(p.params)
		}
	}
	return n
}

// int8Scale returns the scale of column j of the k×out weights w, or
// false when some weight of the column is not float32(q)·scale for an
// integer q in [-127, 127] (a model whose weights were not rounded by
// RoundWeightsInt8). It tries the scale max|w|/127 and its neighbours,
// one of which is the scale that rounded the column.
func int8Scale(w []float32, out, j int) (float32, bool) {
	var wmax float32
	for r := j; r < len(w); r += out {
		wmax = max(wmax, float32(math.Abs(float64(w[r]))))
	}
	if wmax == 0 {
		for r := j; r < len(w); r += out {
			if math.Float32bits(w[r]) != 0 { // -0 would read back as +0
				return 0, false
			}
		}
		return 0, true
	}
	s0 := wmax / 127
	for _, s := range []float32{s0, math.Nextafter32(s0, 0), math.Nextafter32(s0, 1), math.Nextafter32(math.Nextafter32(s0, 0), 0), math.Nextafter32(math.Nextafter32(s0, 1), 1)} {
		ok := s > 0
		for r := j; ok && r < len(w); r += out {
			q := math.Round(float64(w[r] / s))
			// Bit for bit as the reader computes it (a -0 weight would
			// read back as +0).
			ok = math.Abs(q) <= 127 && math.Float32bits(float32(int8(q))*s) == math.Float32bits(w[r])
		}
		if ok {
			return s, true
		}
	}
	return 0, false
}

// RoundWeightsInt8 rounds the weights of every dense and conv2d layer of
// m to int8 with one scale per output channel (max |w| / 127), in place:
// each weight becomes float32(q)·scale. A model so rounded stores at
// about a quarter of its float size when its spec says it is served in
// int8 (Spec.Quantize), and quantizes (Quantize) to the same int8
// weights.
func (m *Model) RoundWeightsInt8() {
	for i := range m.plans {
		out := m.int8Columns(i)
		if out == 0 {
			continue
		}
		w, _ := m.LayerParams(i)
		for j := range out {
			var wmax float32
			for r := j; r < len(w); r += out {
				wmax = max(wmax, float32(math.Abs(float64(w[r]))))
			}
			s := wmax / 127
			for r := j; r < len(w); r += out {
				var q float64
				if s > 0 {
					q = max(-127, min(127, math.Round(float64(w[r]/s))))
				}
				w[r] = float32(int8(q)) * s // +0 for a zero, as the file reads it
			}
		}
	}
}

// int8Params encodes m's parameters in the int8 form, or returns false
// when its spec is not served in int8 or its weights are not rounded.
func (m *Model) int8Params() ([]byte, bool) {
	if m.Spec.Quantize != QuantizeInt8 {
		return nil, false
	}
	b := make([]byte, 0, m.int8Size())
	for i := range m.plans {
		p := &m.plans[i]
		out := m.int8Columns(i)
		if out == 0 {
			b = appendFloats(b, m.Params[p.offset:p.offset+p.params])
			continue
		}
		w, bias := m.LayerParams(i)
		scales := make([]float32, out)
		for j := range out {
			s, ok := int8Scale(w, out, j)
			if !ok {
				return nil, false
			}
			scales[j] = s
		}
		for r, v := range w {
			var q float64
			if s := scales[r%out]; s > 0 {
				q = math.Round(float64(v / s))
			}
			b = append(b, byte(int8(q)))
		}
		b = appendFloats(b, scales)
		b = appendFloats(b, bias)
	}
	return b, true
}

func appendFloats(b []byte, v []float32) []byte {
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b
}

// readInt8Params reads the int8 form of m's parameters from r.
func (m *Model) readInt8Params(r io.Reader) error {
	var chunk [4096]byte
	floats := func(dst []float32) error {
		for p := dst; len(p) > 0; {
			k := min(len(p), len(chunk)/4)
			if _, err := io.ReadFull(r, chunk[:4*k]); err != nil {
				return readErr(err)
			}
			decodeFloats(p[:k], chunk[:4*k])
			p = p[k:]
		}
		return nil
	}
	for i := range m.plans {
		p := &m.plans[i]
		out := m.int8Columns(i)
		if out == 0 {
			if err := floats(m.Params[p.offset : p.offset+p.params]); err != nil {
				return err
			}
			continue
		}
		w, bias := m.LayerParams(i)
		q := make([]byte, len(w))
		if _, err := io.ReadFull(r, q); err != nil {
			return readErr(err)
		}
		scales := make([]float32, out)
		if err := floats(scales); err != nil {
			return err
		}
		for _, s := range scales {
			if math.IsNaN(float64(s)) || math.IsInf(float64(s), 0) || s < 0 {
				return fmt.Errorf("layer %d: int8 scale %v: %w", i, s, ErrFormat)
			}
		}
		for r, v := range q {
			w[r] = float32(int8(v)) * scales[r%out]
		}
		if err := floats(bias); err != nil {
			return err
		}
	}
	return nil
}
