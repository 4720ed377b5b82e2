package tensor

import (
	"encoding/binary"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
)

// ReadModelHeader reads a model file's spec and parameter count from r
// (the file's start) without reading its parameters: what a caller needs
// to plan for a model it does not load yet. limit is ReadModel's.
func ReadModelHeader(r io.Reader, limit int64) (Spec, int, error) {
	spec, count, _, _, err := readModelHeader(r, limit)
	if err != nil {
		return Spec{}, 0, fmt.Errorf("tensor.ReadModelHeader: %w", err)
	}
	return spec, count, nil
}

// readModelHeader reads the header, spec and count through a CRC-32C
// that it returns, to continue over the parameters, and says whether the
// parameters are in the int8 form (flagInt8).
func readModelHeader(r io.Reader, limit int64) (Spec, int, *crcReader, bool, error) {
	if limit <= 0 {
		limit = DefaultMaxModelBytes
	}
	cr := &crcReader{r: r, crc: crc32.New(castagnoli)}
	var hdr [headerBytes]byte
	if _, err := io.ReadFull(cr, hdr[:]); err != nil {
		return Spec{}, 0, nil, false, fmt.Errorf("header: %w", readErr(err))
	}
	specLen, flags, err := parseHeader(hdr[:])
	if err != nil {
		return Spec{}, 0, nil, false, err
	}
	if encodedSize(specLen, 0) > limit {
		return Spec{}, 0, nil, false, fmt.Errorf("%d-byte spec exceeds the %d-byte limit: %w", specLen, limit, ErrTooLarge)
	}
	buf := make([]byte, specLen+8)
	if _, err := io.ReadFull(cr, buf); err != nil {
		return Spec{}, 0, nil, false, fmt.Errorf("spec: %w", readErr(err))
	}
	spec, count, err := parseSpec(buf[:specLen], buf[specLen:])
	if err != nil {
		return Spec{}, 0, nil, false, err
	}
	size := encodedSize(specLen, count)
	if flags == flagInt8 {
		size = encodedSize(specLen, 0) + int64(count) // at least a byte per parameter
	}
	if size > limit {
		return Spec{}, 0, nil, false, fmt.Errorf("%d-byte model exceeds the %d-byte limit: %w", size, limit, ErrTooLarge)
	}
	return spec, count, cr, flags == flagInt8, nil
}

// ReadModelParams reads one model file from r like ReadModel, but hands
// its parameters to fn a chunk at a time (p holds the values from flat
// index off; fn may overwrite p, which is reused after it returns)
// instead of building the model: a caller that folds the parameters into
// a vector of its own never holds a second one. An error of fn stops the
// reading and is returned. The checksum is verified at the end, after
// every chunk went to fn: a caller must discard what it built from a
// file that fails it.
func ReadModelParams(r io.Reader, limit int64, fn func(off int, p []float32) error) (Spec, error) {
	spec, count, cr, int8Form, err := readModelHeader(r, limit)
	if err != nil {
		return Spec{}, fmt.Errorf("tensor.ReadModelParams: %w", err)
	}
	var chunk [64 << 10]byte
	vals := make([]float32, len(chunk)/4)
	if int8Form {
		// An int8 file is a quarter of the float size: its parameters
		// are rebuilt whole (one model-sized vector) and handed out in
		// chunks like a float file's.
		m, err := newInt8Model(spec)
		if err != nil {
			return Spec{}, fmt.Errorf("tensor.ReadModelParams: %w", err)
		}
		if err := m.readInt8Params(cr); err != nil {
			return Spec{}, fmt.Errorf("tensor.ReadModelParams: parameters: %w", err)
		}
		for off := 0; off < count; off += len(vals) {
			k := copy(vals, m.Params[off:])
			if err := fn(off, vals[:k]); err != nil {
				return Spec{}, err
			}
		}
	}
	for off := 0; off < count && !int8Form; {
		k := min(count-off, len(vals))
		if _, err := io.ReadFull(cr, chunk[:4*k]); err != nil {
			return Spec{}, fmt.Errorf("tensor.ReadModelParams: parameters: %w", readErr(err))
		}
		decodeFloats(vals[:k], chunk[:4*k])
		if err := fn(off, vals[:k]); err != nil {
			return Spec{}, err
		}
		off += k
	}
	got := cr.crc.Sum32()
	var sum [4]byte
	if _, err := io.ReadFull(r, sum[:]); err != nil {
		return Spec{}, fmt.Errorf("tensor.ReadModelParams: checksum: %w", readErr(err))
	}
	if want := binary.LittleEndian.Uint32(sum[:]); got != want {
		return Spec{}, fmt.Errorf("tensor.ReadModelParams: crc32c %08x, file says %08x: %w", got, want, ErrChecksum)
	}
	return spec, nil
}

// crcReader checksums what it reads.
type crcReader struct {
	r   io.Reader
	crc hash.Hash32
}

func (c *crcReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.crc.Write(p[:n])
	return n, err
}

// ModelWith returns a model of spec whose parameters are params itself,
// not a copy (len(params) must be the spec's parameter count): a caller
// that computed a large parameter vector makes it a model without a
// second one.
func ModelWith(spec Spec, params []float32) (*Model, error) {
	if params == nil {
		params = []float32{}
	}
	m, err := newModelWith(spec, params)
	if err != nil {
		return nil, fmt.Errorf("tensor.ModelWith: %w", err)
	}
	return m, nil
}
