package encoding

import (
	"compress/flate"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
)

// Encoder encodes parameter vectors into blobs. It keeps buffers sized to the
// largest vector it has seen, so that after the first call its hot paths
// allocate nothing beyond the growth of dst. The zero value is ready to use.
// An Encoder is not safe for concurrent use.
type Encoder struct {
	delta  []float32 // params − base (+ residual under error feedback)
	xhat   []float32 // the decoder's view of the vector that was encoded
	valhat []float32 // reconstructed kept values (sparse)
	vals   []float32 // kept values (sparse)
	idx    []uint32  // kept indices (sparse)
	hist   []uint32  // radix-select histogram
	raw    []byte    // body before compression
	tmp    [2][]byte // Choose candidates
	last   []float32 // reconstruction of the last encoded vector (x or xhat), if kept

	flate [flate.BestCompression + 3]*flate.Writer // by level + 2 (-1 is 6)
	out   appendWriter
	fh    floatHasher
	sink  resultSink
	buf   []float32 // reconstruction of one chunk
	sum   []float32 // base + reconstruction of one chunk
	rng   rand.PCG
}

// Stats describes one encoding.
type Stats struct {
	// Size is the blob length in bytes.
	Size int
	// RelErr is ||params − result|| / ||params||: how far the receiver's
	// vector is from the one the sender meant (0 when both are zero).
	RelErr float64
	// DeltaRelErr is ||d − d̂|| / ||d|| for a delta d = params − base: the
	// share of the update that was lost. It equals RelErr for a full encoding.
	DeltaRelErr float64
	// ResultHash is HashParams of the vector the decoder will produce.
	ResultHash [HashSize]byte
}

// Choice is what Choose picked.
type Choice struct {
	// Index is the position of the chosen candidate.
	Index   int
	Options Options
	Stats   Stats
}

// Encode returns the blob of params with a fresh Encoder. base, when not
// nil, makes it a delta against base (which the receiver must hold).
func Encode(params, base []float32, opts Options) ([]byte, error) {
	var e Encoder
	return e.AppendEncode(nil, params, base, opts)
}

// AppendEncode appends the blob of params to dst. When base is not nil the
// blob is a delta, params − base, that only a holder of base can decode.
func (e *Encoder) AppendEncode(dst []byte, params, base []float32, opts Options) ([]byte, error) {
	dst, err := e.appendEncode(dst, params, base, opts, nil)
	if err != nil {
		return dst, fmt.Errorf("encoding.AppendEncode: %w", err)
	}
	return dst, nil
}

// AppendEncodeStats is AppendEncode that also measures the reconstruction
// error (one more pass over the vectors).
func (e *Encoder) AppendEncodeStats(dst []byte, params, base []float32, opts Options) ([]byte, Stats, error) {
	var st Stats
	dst, err := e.appendEncode(dst, params, base, opts, &st)
	if err != nil {
		return dst, st, fmt.Errorf("encoding.AppendEncodeStats: %w", err)
	}
	return dst, st, nil
}

// Choose encodes params (against base, when not nil) with every candidate
// and appends to dst the smallest blob whose RelErr is at most maxRelErr.
// Candidates that cannot encode the values (int8 with NaN or Inf) are
// skipped. It returns ErrNoCandidate when none qualifies; a Float32XOR
// candidate guarantees a choice (RelErr and DeltaRelErr are 0, full or
// delta), and so does a Float32 candidate for a full encoding (a float32
// delta is exact only up to the rounding of base + (params − base)).
func Choose(params, base []float32, candidates []Options, maxRelErr float64) ([]byte, Choice, error) {
	var e Encoder
	return e.Choose(nil, params, base, candidates, maxRelErr)
}

// Choose is the package-level Choose with e's buffers.
func (e *Encoder) Choose(dst []byte, params, base []float32, candidates []Options, maxRelErr float64) ([]byte, Choice, error) {
	for i := range candidates {
		if err := candidates[i].Validate(); err != nil {
			return dst, Choice{}, fmt.Errorf("encoding.Choose: candidate %d: %w", i, err)
		}
	}
	x, err := e.prepare(params, base)
	if err != nil {
		return dst, Choice{}, fmt.Errorf("encoding.Choose: %w", err)
	}
	best := Choice{Index: -1}
	cur := 0
	for i := range candidates {
		var st Stats
		b, err := e.encode(e.tmp[cur][:0], x, params, base, &candidates[i], &st, false)
		e.tmp[cur] = b[:0]
		if errors.Is(err, ErrNonFinite) {
			continue
		}
		if err != nil {
			return dst, Choice{}, fmt.Errorf("encoding.Choose: candidate %d: %w", i, err)
		}
		if st.RelErr <= maxRelErr && (best.Index < 0 || st.Size < best.Stats.Size) {
			best = Choice{Index: i, Options: candidates[i], Stats: st}
			cur = 1 - cur // keep this blob, write the next candidate in the other buffer
		}
	}
	if best.Index < 0 {
		return dst, best, fmt.Errorf("encoding.Choose: %d candidates, max relative error %g: %w", len(candidates), maxRelErr, ErrNoCandidate)
	}
	return append(dst, e.tmp[1-cur][:best.Stats.Size]...), best, nil
}

// checkLengths checks that params can be encoded against base (nil or of
// the same length).
func checkLengths(params, base []float32) error {
	if len(params) > math.MaxInt32 {
		return fmt.Errorf("%d elements: %w", len(params), ErrTooLarge)
	}
	if base != nil && len(base) != len(params) {
		return fmt.Errorf("params %d, base %d: %w", len(params), len(base), ErrLength)
	}
	return nil
}

// prepare checks lengths and returns the vector to encode: params, or
// params − base in e.delta.
func (e *Encoder) prepare(params, base []float32) ([]float32, error) {
	if err := checkLengths(params, base); err != nil {
		return nil, err
	}
	if base == nil {
		return params, nil
	}
	e.delta = resize(e.delta, len(params))
	d := e.delta
	base = base[:len(d)]
	params = params[:len(d)]
	for i := range d {
		d[i] = params[i] - base[i]
	}
	return d, nil
}

func (e *Encoder) appendEncode(dst []byte, params, base []float32, opts Options, st *Stats) ([]byte, error) {
	if err := opts.Validate(); err != nil {
		return dst, err
	}
	if opts.Codec == Float32XOR {
		// The XOR codec reads params and base; it needs no float delta.
		if err := checkLengths(params, base); err != nil {
			return dst, err
		}
		return e.encode(dst, params, params, base, &opts, st, st != nil)
	}
	x, err := e.prepare(params, base)
	if err != nil {
		return dst, err
	}
	return e.encode(dst, x, params, base, &opts, st, st != nil)
}

// encode appends the blob of x to dst. x is the vector itself for a full
// encoding (base nil) or the delta for base. params is what the result
// approximates; it is read only when st is not nil, or by Float32XOR, which
// encodes params itself against base and ignores x. When keep is set,
// e.last holds on return the reconstruction of x the decoder will see
// (before adding base); a Float32XOR delta leaves it nil, as its result is
// params, not base plus a delta.
func (e *Encoder) encode(dst []byte, x, params, base []float32, opts *Options, st *Stats, keep bool) ([]byte, error) {
	n := len(x)
	h := Header{
		Version:    Version,
		Codec:      opts.Codec,
		Compressor: opts.Compressor,
		Count:      n,
		BlockSize:  opts.blockSize(),
		Kept:       n,
	}
	if base != nil {
		h.Flags |= FlagDelta
		h.BaseHash = HashParams(base)
	}
	if opts.TopK > 0 {
		h.Flags |= FlagSparse
		if e.hist == nil {
			e.hist = make([]uint32, histSize)
		}
		e.idx = selectTopK(e.idx[:0], x, keepCount(opts.TopK, n), e.hist)
		e.vals = resize(e.vals, len(e.idx))
		for j, i := range e.idx {
			e.vals[j] = x[i]
		}
		h.Kept = len(e.vals)
	}
	var rng *rand.PCG
	if opts.Stochastic {
		e.rng.Seed(opts.Seed, opts.Seed^0x9e3779b97f4a7c15)
		rng = &e.rng
	}

	off := len(dst)
	dst = appendHeader(dst, &h) // placeholder, rewritten below
	body := dst
	if opts.Compressor != NoCompression {
		body = e.raw[:0]
	}
	start := len(body)
	e.sink = resultSink{x: x, params: params, base: base, st: st}
	e.fh.reset()
	var err error
	switch {
	case h.Codec == Float32XOR:
		body = e.encodeXOR(body, params, base)
	case h.Sparse():
		body, err = e.encodeSparse(body, x, h.Codec, h.BlockSize, rng)
	default:
		body, err = e.encodeDense(body, x, h.Codec, h.BlockSize, rng, keep)
	}
	if err != nil {
		return dst[:off], err
	}
	h.RawLen = len(body) - start
	if h.RawLen > math.MaxInt32 {
		return dst[:off], fmt.Errorf("body of %d bytes: %w", h.RawLen, ErrTooLarge)
	}
	h.ResultHash = e.finish()

	if opts.Compressor == NoCompression {
		dst = body
	} else {
		e.raw = body
		hdrEnd := len(dst)
		if dst, err = e.compress(dst, body, opts.level(h.RawLen)); err != nil {
			return dst[:off], err
		}
		if len(dst)-hdrEnd >= h.RawLen {
			// Incompressible (e.g. int8 of uniform weights): store it.
			h.Compressor = NoCompression
			dst = append(dst[:hdrEnd], body...)
		}
	}
	appendHeader(dst[:off], &h)
	if st != nil {
		st.Size = len(dst) - off
		st.ResultHash = h.ResultHash
	}
	return dst, nil
}

// chunkLen is how many values the dense path encodes, reconstructs and
// hashes at a time: a multiple of the int8 block size near 4096, so a chunk
// stays in L1/L2 between the passes.
func chunkLen(bs int) int {
	if bs <= 0 {
		return 4096
	}
	return bs * ((4096 + bs - 1) / bs)
}

// encodeDense appends the values of x and feeds their reconstruction to the
// result sink chunk by chunk, while the chunk is still in cache.
func (e *Encoder) encodeDense(body []byte, x []float32, c Codec, bs int, rng *rand.PCG, keep bool) ([]byte, error) {
	n := len(x)
	valOff := len(body)
	body = grow(body, int(valuesLen(c, uint64(n), uint64(bs))))
	region := body[valOff:]
	chunk := chunkLen(bs)
	e.buf = resize(e.buf, min(chunk, n))
	e.last = x
	if keep && c != Float32 {
		e.xhat = resize(e.xhat, n)
		e.last = e.xhat
	}
	nb := 0
	if c == Int8 {
		nb = (n + bs - 1) / bs
	}
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		xc := x[lo:hi]
		xh := xc
		switch c {
		case Float32:
			putFloat32(region[4*lo:], xc)
		case Float16:
			putHalf(region[2*lo:], xc)
			xh = e.buf[:hi-lo]
			decodeHalf(xh, region[2*lo:])
		case Int8:
			scales, q := region[4*(lo/bs):4*nb], region[4*nb+lo:]
			if err := quantizeInt8(scales, q, xc, bs, rng); err != nil {
				return body[:valOff], err
			}
			xh = e.buf[:hi-lo]
			dequantizeInt8(xh, scales, q, bs)
		}
		if keep && c != Float32 {
			copy(e.xhat[lo:hi], xh)
		}
		e.feed(lo, xh)
	}
	return body, nil
}

// encodeXOR appends the XOR planes of params against base (nil for a full
// encoding) and hashes params, chunk by chunk while a chunk is in cache. The
// result is params exactly: the sink's errors stay zero.
func (e *Encoder) encodeXOR(body []byte, params, base []float32) []byte {
	n := len(params)
	off := len(body)
	body = grow(body, 4*n)
	planes := body[off:]
	for lo := 0; lo < n; lo += xorChunk {
		hi := min(lo+xorChunk, n)
		var b []float32
		if base != nil {
			b = base[lo:hi]
		}
		putXORPlanesAt(planes, n, lo, params[lo:hi], b)
		e.fh.write(params[lo:hi])
	}
	e.last = nil
	if base == nil {
		e.last = params
	}
	return body
}

// encodeSparse appends the kept indices and values (e.idx, e.vals) and feeds
// the dense reconstruction to the result sink.
func (e *Encoder) encodeSparse(body []byte, x []float32, c Codec, bs int, rng *rand.PCG) ([]byte, error) {
	body = appendIndices(body, e.idx)
	valOff := len(body)
	body, err := appendValues(body, e.vals, c, bs, rng)
	if err != nil {
		return body, err
	}
	valhat := e.vals
	if c != Float32 {
		e.valhat = resize(e.valhat, len(e.vals))
		valhat = e.valhat
		decodeValues(valhat, body[valOff:], c, bs)
	}
	e.xhat = resize(e.xhat, len(x))
	scatter(e.xhat, e.idx, valhat)
	e.last = e.xhat
	chunk := chunkLen(0)
	for lo := 0; lo < len(x); lo += chunk {
		e.feed(lo, e.xhat[lo:min(lo+chunk, len(x))])
	}
	return body, nil
}

// resultSink is the state of one encoding's pass over its reconstruction:
// the hash of the result and, when st is set, the error sums.
type resultSink struct {
	x, params, base []float32
	st              *Stats
	perr, pnorm     float64 // against params
	derr, dnorm     float64 // against x
}

// feed takes the reconstruction xh of x[lo:lo+len(xh)]: it forms the result
// (base + xh for a delta), hashes it and accumulates the errors.
func (e *Encoder) feed(lo int, xh []float32) {
	s := &e.sink
	hi := lo + len(xh)
	if s.st != nil {
		a, b := sqErr(s.x[lo:hi], xh)
		s.derr += a
		s.dnorm += b
	}
	if s.base == nil {
		e.fh.write(xh)
		return
	}
	e.sum = resize(e.sum, max(len(xh), cap(e.sum)))
	r := e.sum[:len(xh)]
	addInto(r, s.base[lo:hi], xh)
	e.fh.write(r)
	if s.st != nil {
		a, b := sqErr(s.params[lo:hi], r)
		s.perr += a
		s.pnorm += b
	}
}

// finish returns the result hash and fills the sink's Stats errors.
func (e *Encoder) finish() [HashSize]byte {
	s := &e.sink
	if s.st != nil {
		s.st.DeltaRelErr = ratio(s.derr, s.dnorm)
		s.st.RelErr = s.st.DeltaRelErr
		if s.base != nil {
			s.st.RelErr = ratio(s.perr, s.pnorm)
		}
	}
	e.sink = resultSink{}
	return e.fh.sum()
}

// compress appends the DEFLATE stream of raw to dst.
func (e *Encoder) compress(dst, raw []byte, level int) ([]byte, error) {
	if level == flate.DefaultCompression {
		level = 6
	}
	e.out.b = dst
	w := e.flate[level+2]
	if w == nil {
		var err error
		if w, err = flate.NewWriter(&e.out, level); err != nil {
			return dst, err
		}
		e.flate[level+2] = w
	} else {
		w.Reset(&e.out)
	}
	if _, err := w.Write(raw); err != nil {
		return dst, err
	}
	if err := w.Close(); err != nil {
		return dst, err
	}
	dst = e.out.b
	e.out.b = nil
	return dst, nil
}

// appendWriter is an io.Writer appending to a slice.
type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// appendValues appends vals in codec c.
func appendValues(dst []byte, vals []float32, c Codec, bs int, rng *rand.PCG) ([]byte, error) {
	switch c {
	case Float16:
		return appendHalf(dst, vals), nil
	case Int8:
		return appendInt8(dst, vals, bs, rng)
	}
	return appendFloat32(dst, vals), nil
}

// decodeValues decodes len(dst) values in codec c from src, which holds
// exactly valuesLen bytes.
func decodeValues(dst []float32, src []byte, c Codec, bs int) {
	switch c {
	case Float16:
		decodeHalf(dst, src)
	case Int8:
		decodeInt8(dst, src, bs)
	default:
		decodeFloat32(dst, src)
	}
}

// scatter sets dst to zero except dst[idx[j]] = vals[j].
func scatter(dst []float32, idx []uint32, vals []float32) {
	clear(dst)
	vals = vals[:len(idx)]
	for j, i := range idx {
		dst[i] = vals[j]
	}
}

// addInto sets dst[i] = base[i] + x[i]: how a delta's result is formed, on
// both sides, so both hash the same bits.
func addInto(dst, base, x []float32) {
	base = base[:len(dst)]
	x = x[:len(dst)]
	for i := range dst {
		dst[i] = base[i] + x[i]
	}
}

// relErr is ||x − y|| / ||x||. Entries that are NaN in both, or the same
// infinity in both, count as exact; non-finite entries of x do not count
// toward its norm.
func relErr(x, y []float32) float64 {
	return ratio(sqErr(x, y))
}

// sqErr returns ||x − y||² and ||x||² over the finite entries, counting
// matching non-finite entries as exact (see relErr).
func sqErr(x, y []float32) (num, den float64) {
	y = y[:len(x)]
	for i, v := range x {
		w := y[i]
		d := float64(v) - float64(w)
		if d != d || math.IsInf(d, 0) { // NaN or Inf involved
			if v == w || (v != v && w != w) {
				continue
			}
			num = math.Inf(1)
			continue
		}
		num += d * d
		den += float64(v) * float64(v)
	}
	return num, den
}

// ratio is sqrt(num/den), 0 for 0/0 and +Inf for a nonzero error of zero.
func ratio(num, den float64) float64 {
	if den == 0 {
		if num == 0 {
			return 0
		}
		return math.Inf(1)
	}
	return math.Sqrt(num / den)
}

// resize returns s with length n, reallocating only when its capacity is
// short.
func resize[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}
