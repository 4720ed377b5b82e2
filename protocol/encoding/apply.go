package encoding

import (
	"bufio"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// DefaultApplyChunk is how many elements Decoder.Apply decodes at a time
// when Decoder.ApplyChunk is zero: 64 Ki elements, 256 KiB of float32.
const DefaultApplyChunk = 1 << 16

// applyReadBuf is the read buffer of each section of a body Apply reads.
const applyReadBuf = 32 << 10

// Apply decodes the blob of size bytes that src holds into dst, in place
// and a chunk of elements at a time, so that it holds O(ApplyChunk)
// elements beyond dst whatever the blob's size. For a delta blob dst holds
// the base on entry (its hash must be the blob's BaseHash, ErrBaseMismatch
// otherwise) and the result on return; a full blob overwrites dst, whose
// length must be the blob's count. The result is bit for bit what Decode
// returns for the same blob and base.
//
// The blob's body is read in element order: a body of several sections
// (the four byte planes of Float32XOR, the scales and the bytes of Int8)
// gets one reader per section; a compressed body is inflated once per
// section, each reader discarding what precedes its section, so a
// Float32XOR blob costs 2.5 times the inflating of Decode and no memory.
// Sparse blobs need their indices whole and return ErrUnsupported.
//
// On error dst may have been partly overwritten (a corrupt body is found
// only as it is read, and the result hash only at the end): the caller
// must discard it.
func (d *Decoder) Apply(dst []float32, src io.ReaderAt, size int64) error {
	if err := d.apply(dst, src, size); err != nil {
		return fmt.Errorf("encoding.Apply: %w", err)
	}
	return nil
}

func (d *Decoder) apply(dst []float32, src io.ReaderAt, size int64) error {
	var hb [DeltaHeaderSize]byte
	hn := int(min(size, DeltaHeaderSize))
	if n, err := src.ReadAt(hb[:hn], 0); n < hn {
		return fmt.Errorf("header: %v: %w", err, ErrCorrupt)
	}
	h, err := ParseHeader(hb[:hn])
	if err != nil {
		return err
	}
	if h.Sparse() {
		return fmt.Errorf("a sparse blob is not applied in chunks: %w", ErrUnsupported)
	}
	limit := d.MaxElements
	if limit <= 0 {
		limit = DefaultMaxElements
	}
	if h.Count > limit {
		return fmt.Errorf("%d elements, limit %d: %w", h.Count, limit, ErrTooLarge)
	}
	if len(dst) != h.Count {
		if h.Delta() {
			return fmt.Errorf("delta of %d elements, base of %d: %w", h.Count, len(dst), ErrBaseMismatch)
		}
		return fmt.Errorf("blob of %d elements into %d: %w", h.Count, len(dst), ErrLength)
	}
	d.fh.reset()
	if h.Delta() {
		d.fh.write(dst)
		if got := d.fh.sum(); got != h.BaseHash {
			return fmt.Errorf("base hash %x, blob wants %x: %w", got, h.BaseHash, ErrBaseMismatch)
		}
		d.fh.reset()
	}
	body := io.NewSectionReader(src, int64(h.Size()), size-int64(h.Size()))
	secs, err := openSections(body, &h)
	if err != nil {
		return err
	}
	if err := d.applyChunks(dst, secs, &h); err != nil {
		return err
	}
	if err := secs.end(); err != nil {
		return err
	}
	if got := d.fh.sum(); got != h.ResultHash {
		return fmt.Errorf("result %x, header %x: %w", got, h.ResultHash, ErrHashMismatch)
	}
	return nil
}

// applyChunks decodes the dense body that secs reads into dst, a chunk at
// a time, and hashes the result.
func (d *Decoder) applyChunks(dst []float32, secs *sections, h *Header) error {
	chunk := d.ApplyChunk
	if chunk <= 0 {
		chunk = DefaultApplyChunk
	}
	chunk = min(chunk, max(h.Count, 1))
	bytesPer := int(valuesLen(h.Codec, 1, 1)) // 4, 4, 2; Int8: the byte alone
	if h.Codec == Int8 {
		bytesPer = 1
	}
	buf := make([]byte, bytesPer*chunk)
	var vals []float32
	if h.Codec != Float32XOR {
		vals = make([]float32, chunk)
	}
	block, bs := -1, h.BlockSize
	var scale float32
	var sb [4]byte
	for lo := 0; lo < h.Count; lo += chunk {
		hi := min(lo+chunk, h.Count)
		m := hi - lo
		out := dst[lo:hi]
		raw := buf[:bytesPer*m]
		switch h.Codec {
		case Float32XOR:
			for k := range 4 {
				if err := secs.read(k, raw[k*m:(k+1)*m]); err != nil {
					return err
				}
			}
			var base []float32
			if h.Delta() {
				base = out // element i is read before it is written
			}
			decodeXORPlanes(out, raw, base)
		case Int8:
			if err := secs.read(1, raw); err != nil {
				return err
			}
			for i := lo; i < hi; {
				if b := i / bs; b != block {
					if err := secs.read(0, sb[:]); err != nil {
						return err
					}
					block, scale = b, math.Float32frombits(binary.LittleEndian.Uint32(sb[:]))
				}
				e := min(hi, (block+1)*bs)
				dequantize(vals[i-lo:e-lo], raw[i-lo:e-lo], scale)
				i = e
			}
		default:
			if err := secs.read(0, raw); err != nil {
				return err
			}
			decodeValues(vals[:m], raw, h.Codec, 0)
		}
		if h.Codec != Float32XOR {
			if h.Delta() {
				addInto(out, out, vals[:m])
			} else {
				copy(out, vals[:m])
			}
		}
		d.fh.write(out)
	}
	return nil
}

// sections reads the sections of a dense body in parallel: section k is
// raw body bytes [off[k], off[k]+len[k]).
type sections struct {
	rs []io.Reader
	// last reads the end of the body, checked by end; under Flate its
	// inflater and the bytes under it.
	last    io.Reader
	lastBuf *bufio.Reader
	lastSR  *io.SectionReader
	bodyLen int64
	flate   bool
}

// openSections opens a reader per section of h's dense body.
func openSections(body *io.SectionReader, h *Header) (*sections, error) {
	n := int64(h.Count)
	var offs []int64
	switch h.Codec {
	case Float32XOR:
		offs = []int64{0, n, 2 * n, 3 * n}
	case Int8:
		offs = []int64{0, 4 * ((n + int64(h.BlockSize) - 1) / int64(h.BlockSize))}
	default:
		offs = []int64{0}
	}
	s := &sections{bodyLen: body.Size(), flate: h.Compressor == Flate}
	switch h.Compressor {
	case NoCompression:
		if body.Size() != int64(h.RawLen) {
			return nil, fmt.Errorf("body %d bytes, header says %d: %w", body.Size(), h.RawLen, ErrCorrupt)
		}
		for k, off := range offs {
			end := int64(h.RawLen)
			if k+1 < len(offs) {
				end = offs[k+1]
			}
			s.rs = append(s.rs, bufio.NewReaderSize(io.NewSectionReader(body, off, end-off), applyReadBuf))
		}
	case Flate:
		if uint64(h.RawLen) > maxFlateRatio*uint64(body.Size())+64 {
			return nil, fmt.Errorf("%d compressed bytes cannot inflate to %d: %w", body.Size(), h.RawLen, ErrCorrupt)
		}
		for k, off := range offs {
			sr := io.NewSectionReader(body, 0, body.Size())
			br := bufio.NewReaderSize(sr, applyReadBuf)
			fr := flate.NewReader(br)
			if _, err := io.CopyN(io.Discard, fr, off); err != nil {
				return nil, fmt.Errorf("inflate to section %d: %v: %w", k, err, ErrCorrupt)
			}
			s.rs = append(s.rs, fr)
			if k == len(offs)-1 {
				s.last, s.lastBuf, s.lastSR = fr, br, sr
			}
		}
	default:
		return nil, fmt.Errorf("%v: %w", h.Compressor, ErrUnsupported)
	}
	return s, nil
}

// read fills p from section k.
func (s *sections) read(k int, p []byte) error {
	if _, err := io.ReadFull(s.rs[k], p); err != nil {
		return fmt.Errorf("body section %d: %v: %w", k, err, ErrCorrupt)
	}
	return nil
}

// end checks that the body ends where the last section does: the
// compressed stream ends there with no byte after it.
func (s *sections) end() error {
	if !s.flate {
		return nil // each section reader was bounded by the body's length
	}
	var one [1]byte
	if n, err := io.ReadFull(s.last, one[:]); n != 0 || !errors.Is(err, io.EOF) {
		return fmt.Errorf("inflate: stream longer than the body: %w", ErrCorrupt)
	}
	pos, _ := s.lastSR.Seek(0, io.SeekCurrent)
	if rest := s.bodyLen - pos + int64(s.lastBuf.Buffered()); rest != 0 {
		return fmt.Errorf("inflate: %d bytes after the stream: %w", rest, ErrCorrupt)
	}
	return nil
}
