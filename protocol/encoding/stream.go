package encoding

import (
	"compress/flate"
	"errors"
	"fmt"
	"io"
	"math"
)

// FloatReader reads a vector's values in order, like an io.Reader:
// ReadFloats fills p with the next values and returns how many it read,
// and io.EOF once none are left.
type FloatReader interface {
	ReadFloats(p []float32) (int, error)
}

// FloatSource opens a FloatReader at a vector's first value and a
// function that releases it. Every opening must read the same values.
type FloatSource func() (r FloatReader, release func(), err error)

// streamChunk is how many elements WriteLosslessDelta reads at a time.
const streamChunk = 1 << 16

// WriteLosslessDelta writes to w, from offset 0, the lossless delta of
// next against base, both of n values: the blob Encode(next, base,
// LosslessDelta()) returns, bit for bit, unless DEFLATE does not shrink
// the planes (Encode then stores them raw; this keeps them deflated). It
// reads next and base a chunk at a time, once per byte plane, and holds
// O(chunk) values whatever n, so a delta of any size goes to a file
// rather than to memory. The header, which names the result's hash, is
// written last. It returns the blob's size.
func WriteLosslessDelta(w io.WriterAt, n int, next, base FloatSource) (int64, error) {
	size, err := writeLosslessDelta(w, n, next, base)
	if err != nil {
		return 0, fmt.Errorf("encoding.WriteLosslessDelta: %w", err)
	}
	return size, nil
}

func writeLosslessDelta(w io.WriterAt, n int, next, base FloatSource) (int64, error) {
	if n < 0 || 4*uint64(n) > math.MaxInt32 {
		return 0, fmt.Errorf("%d elements: %w", n, ErrTooLarge)
	}
	h := Header{Version: Version, Codec: Float32XOR, Flags: FlagDelta, Compressor: Flate, Count: n, Kept: n, RawLen: 4 * n}
	body := &countingWriter{w: io.NewOffsetWriter(w, DeltaHeaderSize)}
	fw, err := flate.NewWriter(body, LosslessFlateLevel)
	if err != nil {
		return 0, err
	}
	nb := make([]float32, min(n, streamChunk))
	bb := make([]float32, len(nb))
	plane := make([]byte, len(nb))
	var nh, bh floatHasher
	nh.reset()
	bh.reset()
	for k := range 4 {
		err := readPair(n, next, base, nb, bb, func(p, b []float32) error {
			if k == 0 {
				nh.write(p)
				bh.write(b)
			}
			sh := 8 * k
			pl := plane[:len(p)]
			for i, v := range p {
				pl[i] = byte((math.Float32bits(v) ^ math.Float32bits(b[i])) >> sh)
			}
			_, err := fw.Write(pl)
			return err
		})
		if err != nil {
			return 0, err
		}
	}
	if err := fw.Close(); err != nil {
		return 0, err
	}
	h.ResultHash, h.BaseHash = nh.sum(), bh.sum()
	hdr := appendHeader(make([]byte, 0, DeltaHeaderSize), &h)
	if _, err := w.WriteAt(hdr, 0); err != nil {
		return 0, err
	}
	return int64(len(hdr)) + body.n, nil
}

// readPair reads the n values of next and base in step, a chunk of
// len(nb) at a time, into nb and bb, and hands each chunk to fn.
func readPair(n int, next, base FloatSource, nb, bb []float32, fn func(p, b []float32) error) error {
	nr, nrel, err := next()
	if err != nil {
		return err
	}
	defer nrel()
	br, brel, err := base()
	if err != nil {
		return err
	}
	defer brel()
	for lo := 0; lo < n; lo += len(nb) {
		m := min(len(nb), n-lo)
		if err := readFloatsFull(nr, nb[:m]); err != nil {
			return fmt.Errorf("next at %d: %w", lo, err)
		}
		if err := readFloatsFull(br, bb[:m]); err != nil {
			return fmt.Errorf("base at %d: %w", lo, err)
		}
		if err := fn(nb[:m], bb[:m]); err != nil {
			return err
		}
	}
	var one [1]float32
	for _, r := range []FloatReader{nr, br} {
		if k, err := r.ReadFloats(one[:]); k != 0 || !errors.Is(err, io.EOF) {
			if k != 0 || err == nil {
				return fmt.Errorf("more than %d values: %w", n, ErrLength)
			}
			return err
		}
	}
	return nil
}

// readFloatsFull fills p from r; a vector that ends first is ErrLength.
func readFloatsFull(r FloatReader, p []float32) error {
	for len(p) > 0 {
		k, err := r.ReadFloats(p)
		p = p[k:]
		if len(p) == 0 {
			return nil
		}
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("vector ended early: %w", ErrLength)
		}
		if err != nil {
			return err
		}
		if k == 0 {
			return fmt.Errorf("no progress: %w", io.ErrNoProgress)
		}
	}
	return nil
}

// countingWriter counts what it passes on.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	k, err := c.w.Write(p)
	c.n += int64(k)
	return k, err
}
