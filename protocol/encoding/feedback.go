package encoding

import "fmt"

// ErrorFeedback is the memory a sender keeps across rounds when it sends
// lossy updates (top-k, quantization): the residual, what earlier rounds did
// not send, is added to the next update before selection, and whatever that
// round does not send becomes the new residual. Over rounds the sum of what
// was sent plus the residual equals the sum of the updates, so no part of an
// update is lost, only delayed.
//
// The zero value is ready to use; it sizes itself on the first update. An
// ErrorFeedback is not safe for concurrent use.
type ErrorFeedback struct {
	residual []float32
}

// NewErrorFeedback returns an ErrorFeedback for vectors of n elements.
func NewErrorFeedback(n int) *ErrorFeedback {
	return &ErrorFeedback{residual: make([]float32, n)}
}

// Residual returns the error not yet sent (owned by f; do not modify).
func (f *ErrorFeedback) Residual() []float32 { return f.residual }

// Reset forgets the residual, for instance when the sender starts over from
// a new global model.
func (f *ErrorFeedback) Reset() { clear(f.residual) }

// AppendEncode appends to dst the blob of the update plus the residual and
// keeps what the blob does not carry as the new residual. With base nil,
// params is the update itself (e.g. local − global) and the blob is a full
// encoding of params + residual; with base, the update is params − base and
// the blob is a delta against base that decodes to base + the sent update.
func (f *ErrorFeedback) AppendEncode(dst []byte, e *Encoder, params, base []float32, opts Options) ([]byte, error) {
	if err := opts.Validate(); err != nil {
		return dst, fmt.Errorf("encoding.ErrorFeedback: %w", err)
	}
	if f.residual == nil {
		f.residual = make([]float32, len(params))
	}
	if len(f.residual) != len(params) {
		return dst, fmt.Errorf("encoding.ErrorFeedback: update of %d elements, residual of %d: %w", len(params), len(f.residual), ErrLength)
	}
	if opts.Codec == Float32XOR {
		return f.appendLossless(dst, e, params, base, opts)
	}
	x, err := e.prepare(params, base)
	if err != nil {
		return dst, fmt.Errorf("encoding.ErrorFeedback: %w", err)
	}
	// v = update + residual, in the encoder's delta buffer.
	e.delta = resize(e.delta, len(params))
	v := e.delta
	r := f.residual[:len(v)]
	x = x[:len(v)]
	for i := range v {
		v[i] = x[i] + r[i]
	}
	dst, err = e.encode(dst, v, params, base, &opts, nil, true)
	if err != nil {
		return dst, fmt.Errorf("encoding.ErrorFeedback: %w", err)
	}
	sent := e.last[:len(v)]
	for i := range r {
		r[i] = v[i] - sent[i]
	}
	return dst, nil
}

// appendLossless is AppendEncode for Float32XOR, which sends any vector bit
// for bit. It sends y = params + residual, where an entry with a zero
// residual is params's own bits (so -0, NaN payloads and the exact params
// survive; adding zero in float32 would turn -0 into +0). With a zero
// residual the blob therefore decodes to params exactly and the residual
// stays zero. A full encoding carries all of update + residual, so the
// residual becomes zero; a delta leaves in the entries that had a residual
// only the float32 rounding of (params + r) − base against
// (params − base) + r.
func (f *ErrorFeedback) appendLossless(dst []byte, e *Encoder, params, base []float32, opts Options) ([]byte, error) {
	if err := checkLengths(params, base); err != nil {
		return dst, fmt.Errorf("encoding.ErrorFeedback: %w", err)
	}
	n := len(params)
	y := params
	r := f.residual[:n]
	copied := false
	for i, ri := range r {
		if ri == 0 {
			continue
		}
		// Copy on the first nonzero residual only: the usual case, a zero
		// residual, encodes params as they are.
		if !copied {
			e.delta = resize(e.delta, n)
			y = e.delta
			copy(y, params)
			copied = true
		}
		y[i] = params[i] + ri
	}
	dst, err := e.encode(dst, y, y, base, &opts, nil, false)
	if err != nil {
		return dst, fmt.Errorf("encoding.ErrorFeedback: %w", err)
	}
	if base == nil {
		clear(r)
		return dst, nil
	}
	base = base[:n]
	params = params[:n]
	for i, ri := range r {
		if ri != 0 {
			r[i] = (params[i] - base[i] + ri) - (y[i] - base[i])
		}
	}
	return dst, nil
}
