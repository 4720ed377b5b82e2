package tensor

import (
	"bytes"
	"crypto/sha256"
	"encoding"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
)

// Model file format, all integers little-endian:
//
//	offset   size     field
//	0        8        magic "FEDGEMDL"
//	8        2        format version (ModelFormatVersion)
//	10       2        flags: 0, or flagInt8 (weights stored as int8)
//	12       4        S, length of the spec JSON (at most MaxSpecBytes)
//	16       S        spec, JSON (Spec)
//	16+S     8        P, parameter count; must equal the spec's
//	24+S     4·P      parameters, IEEE-754 float32 (with flagInt8: the
//	                  int8 form, see flagInt8, about P bytes)
//	end-4    4        CRC-32C (Castagnoli) of every byte before it
//
// Version history:
//
//	1  initial format. The spec may carry an external layout
//	   (Spec.External, added without a version change: engine specs encode
//	   exactly as before, and a build without it rejects such a file as a
//	   spec with an unknown field, ErrFormat). Likewise the text models'
//	   Spec.Text and embedding_bag layer (vocab, dim), and Spec.Calibration.
//	   The flagInt8 form of a model served in int8 came later too; a build
//	   without it rejects such a file for its unknown flag (ErrFormat).
const (
	ModelMagic         = "FEDGEMDL"
	ModelFormatVersion = 1
	// MaxSpecBytes bounds the spec JSON of a model file.
	MaxSpecBytes = 1 << 20
	// DefaultMaxModelBytes is the size ReadModel accepts when its limit is
	// zero: 256 MiB, over a hundred times the FedAvg CNN.
	DefaultMaxModelBytes = 256 << 20

	headerBytes  = 16
	trailerBytes = 4
)

var (
	castagnoli = crc32.MakeTable(crc32.Castagnoli)

	_ encoding.BinaryMarshaler = (*Model)(nil)
	_ io.WriterTo              = (*Model)(nil)
)

// encodedSize is the byte length of a model file with s bytes of spec and
// p parameters.
func encodedSize(s, p int) int64 { return headerBytes + int64(s) + 8 + 4*int64(p) + trailerBytes }

// MarshalBinary encodes m in the model file format. The encoding is
// deterministic: equal specs and parameters give equal bytes.
func (m *Model) MarshalBinary() ([]byte, error) {
	spec, err := json.Marshal(m.Spec)
	if err != nil {
		return nil, fmt.Errorf("tensor.Model.MarshalBinary: %w", err)
	}
	var buf bytes.Buffer
	buf.Grow(int(encodedSize(len(spec), len(m.Params))))
	if _, err := m.writeTo(&buf, spec); err != nil {
		return nil, fmt.Errorf("tensor.Model.MarshalBinary: %w", err)
	}
	return buf.Bytes(), nil
}

// WriteTo writes m to w in the model file format and returns the number of
// bytes written.
func (m *Model) WriteTo(w io.Writer) (int64, error) {
	spec, err := json.Marshal(m.Spec)
	if err != nil {
		return 0, fmt.Errorf("tensor.Model.WriteTo: %w", err)
	}
	n, err := m.writeTo(w, spec)
	if err != nil {
		return n, fmt.Errorf("tensor.Model.WriteTo: %w", err)
	}
	return n, nil
}

func (m *Model) writeTo(w io.Writer, spec []byte) (int64, error) {
	if err := m.checkParams(false); err != nil {
		return 0, err
	}
	if len(spec) > MaxSpecBytes {
		return 0, fmt.Errorf("spec is %d bytes, more than %d: %w", len(spec), MaxSpecBytes, ErrTooLarge)
	}
	qp, int8Form := m.int8Params()
	crc := crc32.New(castagnoli)
	cw := &countWriter{w: io.MultiWriter(w, crc)}
	var hdr [headerBytes]byte
	copy(hdr[:], ModelMagic)
	binary.LittleEndian.PutUint16(hdr[8:], ModelFormatVersion)
	if int8Form {
		binary.LittleEndian.PutUint16(hdr[10:], flagInt8)
	}
	binary.LittleEndian.PutUint32(hdr[12:], uint32(len(spec)))
	cw.Write(hdr[:])
	cw.Write(spec)
	var cnt [8]byte
	binary.LittleEndian.PutUint64(cnt[:], uint64(len(m.Params)))
	cw.Write(cnt[:])
	var chunk [4096]byte
	for p := m.Params; len(p) > 0 && !int8Form; {
		k := min(len(p), len(chunk)/4)
		for i, v := range p[:k] {
			binary.LittleEndian.PutUint32(chunk[4*i:], math.Float32bits(v))
		}
		cw.Write(chunk[:4*k])
		p = p[k:]
	}
	if int8Form {
		cw.Write(qp)
	}
	var sum [4]byte
	binary.LittleEndian.PutUint32(sum[:], crc.Sum32())
	if cw.err == nil {
		var n int
		n, cw.err = w.Write(sum[:])
		cw.n += int64(n)
	}
	return cw.n, cw.err
}

// countWriter counts bytes and keeps the first error, so writeTo checks
// once at the end.
type countWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countWriter) Write(b []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(b)
	c.n += int64(n)
	c.err = err
	return n, err
}

// UnmarshalModel decodes a model file. It never panics on bad input; it
// checks the length, the checksum, the spec and the parameter count
// against the spec and the byte length before allocating the model, so it
// allocates at most a small multiple of len(b).
func UnmarshalModel(b []byte) (*Model, error) {
	if len(b) < headerBytes+8+trailerBytes {
		return nil, fmt.Errorf("tensor.UnmarshalModel: %d bytes is shorter than a header: %w", len(b), ErrFormat)
	}
	specLen, flags, err := parseHeader(b[:headerBytes])
	if err != nil {
		return nil, fmt.Errorf("tensor.UnmarshalModel: %w", err)
	}
	if int64(len(b)) < encodedSize(specLen, 0) {
		return nil, fmt.Errorf("tensor.UnmarshalModel: %d bytes cannot hold a %d-byte spec: %w", len(b), specLen, ErrFormat)
	}
	body, tail := b[:len(b)-trailerBytes], b[len(b)-trailerBytes:]
	if got, want := crc32.Checksum(body, castagnoli), binary.LittleEndian.Uint32(tail); got != want {
		return nil, fmt.Errorf("tensor.UnmarshalModel: crc32c %08x, file says %08x: %w", got, want, ErrChecksum)
	}
	spec, count, err := parseSpec(b[headerBytes:headerBytes+specLen], b[headerBytes+specLen:headerBytes+specLen+8])
	if err != nil {
		return nil, fmt.Errorf("tensor.UnmarshalModel: %w", err)
	}
	if flags == flagInt8 {
		// At least a byte per parameter before allocating them.
		if int64(len(b)) < encodedSize(specLen, 0)+int64(count) {
			return nil, fmt.Errorf("tensor.UnmarshalModel: %d bytes cannot hold %d int8 parameters: %w", len(b), count, ErrFormat)
		}
		m, err := newInt8Model(spec)
		if err != nil {
			return nil, fmt.Errorf("tensor.UnmarshalModel: %w", err)
		}
		if want := encodedSize(specLen, 0) + m.int8Size(); int64(len(b)) != want {
			return nil, fmt.Errorf("tensor.UnmarshalModel: %d bytes, the header needs %d: %w", len(b), want, ErrFormat)
		}
		if err := m.readInt8Params(bytes.NewReader(b[headerBytes+specLen+8 : len(b)-trailerBytes])); err != nil {
			return nil, fmt.Errorf("tensor.UnmarshalModel: %w", err)
		}
		return m, nil
	}
	if want := encodedSize(specLen, count); int64(len(b)) != want {
		return nil, fmt.Errorf("tensor.UnmarshalModel: %d bytes, the header needs %d: %w", len(b), want, ErrFormat)
	}
	m, err := newModel(spec)
	if err != nil {
		return nil, fmt.Errorf("tensor.UnmarshalModel: %w", err)
	}
	decodeFloats(m.Params, b[headerBytes+specLen+8:])
	return m, nil
}

// ReadModel reads one model file from r, reading exactly its bytes. It
// refuses, before allocating, a file larger than limit bytes
// (DefaultMaxModelBytes when limit <= 0), and never panics on bad input.
func ReadModel(r io.Reader, limit int64) (*Model, error) {
	if limit <= 0 {
		limit = DefaultMaxModelBytes
	}
	crc := crc32.New(castagnoli)
	tr := io.TeeReader(r, crc)
	var hdr [headerBytes]byte
	if _, err := io.ReadFull(tr, hdr[:]); err != nil {
		return nil, fmt.Errorf("tensor.ReadModel: header: %w", readErr(err))
	}
	specLen, flags, err := parseHeader(hdr[:])
	if err != nil {
		return nil, fmt.Errorf("tensor.ReadModel: %w", err)
	}
	if encodedSize(specLen, 0) > limit {
		return nil, fmt.Errorf("tensor.ReadModel: %d-byte spec exceeds the %d-byte limit: %w", specLen, limit, ErrTooLarge)
	}
	buf := make([]byte, specLen+8)
	if _, err := io.ReadFull(tr, buf); err != nil {
		return nil, fmt.Errorf("tensor.ReadModel: spec: %w", readErr(err))
	}
	spec, count, err := parseSpec(buf[:specLen], buf[specLen:])
	if err != nil {
		return nil, fmt.Errorf("tensor.ReadModel: %w", err)
	}
	size := encodedSize(specLen, count)
	if flags == flagInt8 {
		size = encodedSize(specLen, 0) + int64(count) // at least a byte per parameter
	}
	if size > limit {
		return nil, fmt.Errorf("tensor.ReadModel: %d-byte model exceeds the %d-byte limit: %w", size, limit, ErrTooLarge)
	}
	var m *Model
	if flags == flagInt8 {
		if m, err = newInt8Model(spec); err != nil {
			return nil, fmt.Errorf("tensor.ReadModel: %w", err)
		}
		if size := encodedSize(specLen, 0) + m.int8Size(); size > limit {
			return nil, fmt.Errorf("tensor.ReadModel: %d-byte model exceeds the %d-byte limit: %w", size, limit, ErrTooLarge)
		}
		if err := m.readInt8Params(tr); err != nil {
			return nil, fmt.Errorf("tensor.ReadModel: parameters: %w", err)
		}
	} else if m, err = newModel(spec); err != nil {
		return nil, fmt.Errorf("tensor.ReadModel: %w", err)
	}
	var chunk [4096]byte
	for p := m.Params; len(p) > 0 && flags != flagInt8; {
		k := min(len(p), len(chunk)/4)
		if _, err := io.ReadFull(tr, chunk[:4*k]); err != nil {
			return nil, fmt.Errorf("tensor.ReadModel: parameters: %w", readErr(err))
		}
		decodeFloats(p[:k], chunk[:4*k])
		p = p[k:]
	}
	got := crc.Sum32()
	var sum [4]byte
	if _, err := io.ReadFull(r, sum[:]); err != nil {
		return nil, fmt.Errorf("tensor.ReadModel: checksum: %w", readErr(err))
	}
	if want := binary.LittleEndian.Uint32(sum[:]); got != want {
		return nil, fmt.Errorf("tensor.ReadModel: crc32c %08x, file says %08x: %w", got, want, ErrChecksum)
	}
	return m, nil
}

// readErr turns a premature end of input into ErrFormat.
func readErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("truncated: %w", ErrFormat)
	}
	return err
}

// parseHeader checks the fixed header and returns the spec length and
// the flags.
func parseHeader(h []byte) (int, uint16, error) {
	if string(h[:8]) != ModelMagic {
		return 0, 0, fmt.Errorf("bad magic %q: %w", h[:8], ErrFormat)
	}
	if v := binary.LittleEndian.Uint16(h[8:]); v != ModelFormatVersion {
		return 0, 0, fmt.Errorf("format version %d, this build reads %d: %w", v, ModelFormatVersion, ErrFormat)
	}
	f := binary.LittleEndian.Uint16(h[10:])
	if f != 0 && f != flagInt8 {
		return 0, 0, fmt.Errorf("unknown flags %#x: %w", f, ErrFormat)
	}
	s := binary.LittleEndian.Uint32(h[12:])
	if s > MaxSpecBytes {
		return 0, 0, fmt.Errorf("spec of %d bytes exceeds %d: %w", s, MaxSpecBytes, ErrTooLarge)
	}
	return int(s), f, nil
}

// parseSpec decodes and validates the spec JSON and checks the parameter
// count field against it.
func parseSpec(js, cnt []byte) (Spec, int, error) {
	var spec Spec
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&spec); err != nil {
		return Spec{}, 0, fmt.Errorf("spec: %v: %w", err, ErrFormat)
	}
	if dec.More() {
		return Spec{}, 0, fmt.Errorf("spec: trailing data: %w", ErrFormat)
	}
	want, err := spec.ParamCount()
	if err != nil {
		return Spec{}, 0, fmt.Errorf("spec: %w", err)
	}
	if got := binary.LittleEndian.Uint64(cnt); got != uint64(want) {
		return Spec{}, 0, fmt.Errorf("file has %d parameters, its spec needs %d: %w", got, want, ErrFormat)
	}
	return spec, want, nil
}

func decodeFloats(dst []float32, b []byte) {
	b = b[:4*len(dst)]
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
}

// Hash returns the SHA-256 of m's parameters encoded as little-endian
// float32 (HashParams(m.Params)). Protocols use it to name model versions.
func (m *Model) Hash() [32]byte { return HashParams(m.Params) }

// HashParams returns the SHA-256 of params encoded as little-endian
// float32, without materializing the encoding: on little-endian machines it
// hashes params' memory as it is, without allocating. It names model
// versions (protocol/encoding.HashParams is this function).
func HashParams(params []float32) [32]byte {
	if b, ok := leBytes(params); ok {
		return sha256.Sum256(b)
	}
	h := sha256.New()
	var chunk [4096]byte
	for p := params; len(p) > 0; {
		k := min(len(p), len(chunk)/4)
		for i, v := range p[:k] {
			binary.LittleEndian.PutUint32(chunk[4*i:], math.Float32bits(v))
		}
		h.Write(chunk[:4*k])
		p = p[k:]
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}
