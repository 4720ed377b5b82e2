package encoding

import (
	"bytes"
	"compress/flate"
	"errors"
	"fmt"
	"io"
)

// Decoder decodes blobs. It keeps buffers between calls, so decoding into a
// reused dst allocates nothing once warmed up. The zero value is ready to
// use. A Decoder is not safe for concurrent use.
//
// A Decoder trusts nothing in the blob: every size is checked against
// MaxElements and against the body length before anything is allocated, the
// decompressed body is bounded by the length the header announced, and the
// result must hash to the header's ResultHash.
type Decoder struct {
	// MaxElements is the largest element count accepted; zero means
	// DefaultMaxElements. A dense blob must also carry at least one body
	// byte per element, but a sparse one can ask for MaxElements of output
	// from a few bytes: a receiver that knows its model's size should set
	// MaxElements to it.
	MaxElements int
	// ApplyChunk is how many elements Apply decodes at a time; zero means
	// DefaultApplyChunk.
	ApplyChunk int

	raw  []byte
	idx  []uint32
	vals []float32
	br   bytes.Reader
	lr   io.LimitedReader
	fr   io.ReadCloser
	one  [1]byte
	fh   floatHasher
}

// Decode decodes blob with a fresh Decoder (DefaultMaxElements). base must be
// the vector a delta blob was encoded against; it is ignored for a full blob.
func Decode(blob []byte, base []float32) ([]float32, error) {
	var d Decoder
	return d.Decode(nil, blob, base)
}

// Decode decodes blob into dst (reused when its capacity suffices, and
// returned resliced) and checks the result against the header's hash. base
// must be the vector a delta blob was encoded against (ErrBaseMismatch
// otherwise); it is ignored for a full blob. dst must not overlap base. On
// error the contents of dst are unspecified.
func (d *Decoder) Decode(dst []float32, blob []byte, base []float32) ([]float32, error) {
	out, err := d.decode(dst, blob, base)
	if err != nil {
		return dst[:0], fmt.Errorf("encoding.Decode: %w", err)
	}
	return out, nil
}

func (d *Decoder) decode(dst []float32, blob []byte, base []float32) ([]float32, error) {
	h, err := ParseHeader(blob)
	if err != nil {
		return nil, err
	}
	limit := d.MaxElements
	if limit <= 0 {
		limit = DefaultMaxElements
	}
	if h.Count > limit {
		return nil, fmt.Errorf("%d elements, limit %d: %w", h.Count, limit, ErrTooLarge)
	}
	if h.Delta() {
		if base == nil {
			return nil, fmt.Errorf("delta blob without a base: %w", ErrBaseMismatch)
		}
		if len(base) != h.Count {
			return nil, fmt.Errorf("delta of %d elements, base of %d: %w", h.Count, len(base), ErrBaseMismatch)
		}
		if HashParams(base) != h.BaseHash {
			return nil, fmt.Errorf("base hash %x, blob wants %x: %w", HashParams(base), h.BaseHash, ErrBaseMismatch)
		}
	}
	raw, err := d.body(blob[h.Size():], &h)
	if err != nil {
		return nil, err
	}

	out := resize(dst, h.Count)
	vlen := int(valuesLen(h.Codec, uint64(h.Kept), uint64(h.BlockSize)))
	if h.Sparse() {
		d.idx = resize(d.idx, h.Kept)
		used, err := decodeIndices(d.idx, raw, h.Count)
		if err != nil {
			return nil, fmt.Errorf("indices: %w", err)
		}
		if len(raw)-used != vlen {
			return nil, fmt.Errorf("%d value bytes after the indices, want %d: %w", len(raw)-used, vlen, ErrCorrupt)
		}
		d.vals = resize(d.vals, h.Kept)
		decodeValues(d.vals, raw[used:], h.Codec, h.BlockSize)
		scatter(out, d.idx, d.vals)
	} else if h.Codec == Float32XOR {
		// ParseHeader tied RawLen to 4 bytes per element; a full blob XORs
		// with nothing.
		var b []float32
		if h.Delta() {
			b = base
		}
		decodeXORPlanes(out, raw, b)
	} else {
		// ParseHeader tied RawLen to the value bytes of a dense body.
		decodeValues(out, raw, h.Codec, h.BlockSize)
	}
	if h.Delta() && h.Codec != Float32XOR {
		addInto(out, base, out)
	}
	d.fh.reset()
	d.fh.write(out)
	if got := d.fh.sum(); got != h.ResultHash {
		return nil, fmt.Errorf("result %x, header %x: %w", got, h.ResultHash, ErrHashMismatch)
	}
	return out, nil
}

// body returns the uncompressed body of exactly h.RawLen bytes.
func (d *Decoder) body(body []byte, h *Header) ([]byte, error) {
	switch h.Compressor {
	case NoCompression:
		if len(body) != h.RawLen {
			return nil, fmt.Errorf("body %d bytes, header says %d: %w", len(body), h.RawLen, ErrCorrupt)
		}
		return body, nil
	case Flate:
		if uint64(h.RawLen) > maxFlateRatio*uint64(len(body))+64 {
			return nil, fmt.Errorf("%d compressed bytes cannot inflate to %d: %w", len(body), h.RawLen, ErrCorrupt)
		}
		d.br.Reset(body)
		if d.fr == nil {
			d.fr = flate.NewReader(&d.br)
		} else if err := d.fr.(flate.Resetter).Reset(&d.br, nil); err != nil {
			return nil, fmt.Errorf("flate reset: %w", err)
		}
		d.lr = io.LimitedReader{R: d.fr, N: int64(h.RawLen) + 1}
		d.raw = resize(d.raw, h.RawLen)
		if _, err := io.ReadFull(&d.lr, d.raw); err != nil {
			return nil, fmt.Errorf("inflate: %v: %w", err, ErrCorrupt)
		}
		// The stream must end exactly here, with no bytes after it.
		if n, err := d.lr.Read(d.one[:]); n != 0 || !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("inflate: stream longer than %d bytes: %w", h.RawLen, ErrCorrupt)
		}
		if d.br.Len() != 0 {
			return nil, fmt.Errorf("inflate: %d bytes after the stream: %w", d.br.Len(), ErrCorrupt)
		}
		return d.raw, nil
	}
	return nil, fmt.Errorf("%v: %w", h.Compressor, ErrUnsupported)
}
