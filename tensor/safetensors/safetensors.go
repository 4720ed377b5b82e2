package safetensors

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"unsafe"

	"github.com/fedge/fedge/tensor"
)

// DTypeF32 is the only dtype this package reads or writes.
const DTypeF32 = "F32"

// MaxHeaderBytes bounds the JSON header of a file (16 MiB, enough for a
// hundred thousand tensors).
const MaxHeaderBytes = 16 << 20

// metadataKey is the header entry holding free-form string metadata.
const metadataKey = "__metadata__"

// Sentinel errors, for errors.Is.
var (
	// ErrFormat reports bytes that are not a well-formed safetensors file:
	// a bad header, overlapping or gapped offsets, truncated or trailing
	// data.
	ErrFormat = errors.New("safetensors: malformed file")
	// ErrDType reports a tensor whose dtype is not F32.
	ErrDType = errors.New("safetensors: dtype is not F32")
	// ErrTooLarge reports a file larger than the caller's limit, detected
	// before the data is read.
	ErrTooLarge = errors.New("safetensors: file exceeds size limit")
	// ErrLayout reports a file whose tensors (names, shapes) differ from
	// the layout the caller expects (ReadInto).
	ErrLayout = errors.New("safetensors: tensors do not match the expected layout")
)

// File is a decoded header: the tensors in data order (their flat vector
// is the concatenation of their data, in that order) and the metadata.
type File struct {
	Layout   []tensor.ExternalTensor
	Metadata map[string]string
	// DataBytes is the length of the data section.
	DataBytes int64
}

// Params returns the number of float32 values of f's tensors.
func (f *File) Params() int { return int(f.DataBytes / 4) }

// entry is one tensor of a header as it appears in the JSON.
type entry struct {
	DType       string   `json:"dtype"`
	Shape       []int64  `json:"shape"`
	DataOffsets [2]int64 `json:"data_offsets"`
}

// header is an entry with its name, for sorting by offset.
type header struct {
	name string
	entry
}

// Write writes params, laid out as layout (the concatenation of its
// tensors in order), as a safetensors file to w, with the optional string
// metadata. It writes the data from params directly, without copying it.
// It returns the number of bytes written.
func Write(w io.Writer, layout []tensor.ExternalTensor, params []float32, metadata map[string]string) (int64, error) {
	spec := tensor.Spec{External: layout}
	offs, total, err := spec.ExternalOffsets()
	if err != nil {
		return 0, fmt.Errorf("safetensors.Write: %w", err)
	}
	if total != len(params) {
		return 0, fmt.Errorf("safetensors.Write: %d values for a layout of %d: %w", len(params), total, ErrLayout)
	}
	hdr, err := encodeHeader(layout, offs, metadata)
	if err != nil {
		return 0, fmt.Errorf("safetensors.Write: %w", err)
	}
	var n int64
	var size [8]byte
	binary.LittleEndian.PutUint64(size[:], uint64(len(hdr)))
	for _, b := range [][]byte{size[:], hdr} {
		k, err := w.Write(b)
		n += int64(k)
		if err != nil {
			return n, fmt.Errorf("safetensors.Write: %w", err)
		}
	}
	k, err := writeFloats(w, params)
	n += k
	if err != nil {
		return n, fmt.Errorf("safetensors.Write: %w", err)
	}
	return n, nil
}

// encodeHeader builds the JSON header in layout order, padded with spaces
// to a multiple of 8 bytes so the data starts aligned.
func encodeHeader(layout []tensor.ExternalTensor, offs []int, metadata map[string]string) ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	if len(metadata) > 0 {
		m, err := json.Marshal(metadata)
		if err != nil {
			return nil, err
		}
		b.WriteString(`"` + metadataKey + `":`)
		b.Write(m)
	}
	for i, t := range layout {
		if b.Len() > 1 {
			b.WriteByte(',')
		}
		name, err := json.Marshal(t.Name)
		if err != nil {
			return nil, err
		}
		b.Write(name)
		b.WriteString(`:{"dtype":"F32","shape":[`)
		for j, d := range t.Shape {
			if j > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Itoa(d))
		}
		start := 4 * int64(offs[i])
		end := start + 4*int64(t.Size())
		fmt.Fprintf(&b, `],"data_offsets":[%d,%d]}`, start, end)
	}
	b.WriteByte('}')
	for b.Len()%8 != 0 {
		b.WriteByte(' ')
	}
	if b.Len() > MaxHeaderBytes {
		return nil, fmt.Errorf("header of %d bytes exceeds %d: %w", b.Len(), MaxHeaderBytes, ErrTooLarge)
	}
	return b.Bytes(), nil
}

// ReadHeader reads the length and JSON header from r and validates them:
// F32 tensors only, unique names valid as tensor.ExternalTensor names,
// offsets that tile the data from 0 without gaps or overlaps. limit bounds
// the whole file (header and data); it must be positive.
func ReadHeader(r io.Reader, limit int64) (*File, error) {
	var size [8]byte
	if _, err := io.ReadFull(r, size[:]); err != nil {
		return nil, fmt.Errorf("safetensors.ReadHeader: length: %w", readErr(err))
	}
	n := binary.LittleEndian.Uint64(size[:])
	if n > MaxHeaderBytes {
		return nil, fmt.Errorf("safetensors.ReadHeader: header of %d bytes exceeds %d: %w", n, MaxHeaderBytes, ErrTooLarge)
	}
	if int64(n)+8 > limit {
		return nil, fmt.Errorf("safetensors.ReadHeader: header of %d bytes exceeds the %d-byte limit: %w", n, limit, ErrTooLarge)
	}
	js := make([]byte, n)
	if _, err := io.ReadFull(r, js); err != nil {
		return nil, fmt.Errorf("safetensors.ReadHeader: header: %w", readErr(err))
	}
	f, err := parseHeader(js)
	if err != nil {
		return nil, fmt.Errorf("safetensors.ReadHeader: %w", err)
	}
	if total := 8 + int64(n) + f.DataBytes; total > limit {
		return nil, fmt.Errorf("safetensors.ReadHeader: %d-byte file exceeds the %d-byte limit: %w", total, limit, ErrTooLarge)
	}
	return f, nil
}

// parseHeader decodes the JSON header token by token, so that a repeated
// name is an error rather than silently overwritten.
func parseHeader(js []byte) (*File, error) {
	bad := func(format string, args ...any) (*File, error) {
		return nil, fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrFormat)
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return bad("header is not a JSON object")
	}
	f := &File{}
	var hs []header
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return bad("header: %v", err)
		}
		name, _ := tok.(string)
		if seen[name] {
			return bad("%q appears twice in the header", name)
		}
		seen[name] = true
		if name == metadataKey {
			if err := dec.Decode(&f.Metadata); err != nil {
				return bad("__metadata__ must map strings to strings: %v", err)
			}
			continue
		}
		var e entry
		if err := dec.Decode(&e); err != nil {
			return bad("tensor %q: %v", name, err)
		}
		if e.DType != DTypeF32 {
			return nil, fmt.Errorf("tensor %q has dtype %q; fedge accepts F32 only (convert it with .float(), or keep it out of the federated weights): %w", name, e.DType, ErrDType)
		}
		hs = append(hs, header{name, e})
	}
	if _, err := dec.Token(); err != nil {
		return bad("header: %v", err)
	}
	// Only the space padding may follow the object.
	if rest := js[dec.InputOffset():]; len(bytes.Trim(rest, " ")) > 0 {
		return bad("trailing bytes after the header object")
	}
	slices.SortFunc(hs, func(a, b header) int {
		if c := a.DataOffsets[0] - b.DataOffsets[0]; c != 0 {
			if c < 0 {
				return -1
			}
			return 1
		}
		return int(min(max(a.DataOffsets[1]-b.DataOffsets[1], -1), 1))
	})
	f.Layout = make([]tensor.ExternalTensor, len(hs))
	var end int64
	for i, h := range hs {
		t := tensor.ExternalTensor{Name: h.name, Shape: make([]int, len(h.Shape))}
		for j, d := range h.Shape {
			if d <= 0 || d > tensor.MaxParams {
				return bad("tensor %q: dimension %d of shape %v is not in [1, %d]", h.name, j, h.Shape, tensor.MaxParams)
			}
			t.Shape[j] = int(d)
		}
		if len(t.Shape) > tensor.MaxTensorDims {
			return bad("tensor %q has %d dimensions, more than %d", h.name, len(t.Shape), tensor.MaxTensorDims)
		}
		vals := t.Size()
		if vals < 0 {
			return bad("tensor %q: shape %v has more than %d values", h.name, h.Shape, tensor.MaxParams)
		}
		if h.DataOffsets[0] != end || h.DataOffsets[1] != end+4*int64(vals) {
			return bad("tensor %q: data_offsets %v, want [%d, %d] (tensors must tile the data)", h.name, h.DataOffsets, end, end+4*int64(vals))
		}
		end = h.DataOffsets[1]
		f.Layout[i] = t
	}
	// The layout rules (names, total size) are tensor's.
	if len(f.Layout) > 0 {
		if _, err := (tensor.Spec{External: f.Layout}).ParamCount(); err != nil {
			return bad("%v", err)
		}
	}
	f.DataBytes = end
	return f, nil
}

// Read reads a whole safetensors file from r: its header, and its data
// into one new flat vector in data order (f.Layout). It refuses a file
// larger than limit bytes before allocating, and input after the data.
func Read(r io.Reader, limit int64) (*File, []float32, error) {
	f, err := ReadHeader(r, limit)
	if err != nil {
		return nil, nil, fmt.Errorf("safetensors.Read: %w", err)
	}
	params := make([]float32, f.Params())
	if err := readFloats(r, params); err != nil {
		return nil, nil, fmt.Errorf("safetensors.Read: data: %w", err)
	}
	if err := expectEOF(r); err != nil {
		return nil, nil, fmt.Errorf("safetensors.Read: %w", err)
	}
	return f, params, nil
}

// ReadInto reads a safetensors file whose tensors are exactly layout's
// (the same names and shapes, in any data order; F32) into dst, laid out
// as layout. dst must hold the layout's parameter count. It refuses a
// file larger than limit bytes, before reading its data, and a file with
// a missing, extra or reshaped tensor (ErrLayout), naming it. On error dst
// holds partial data.
func ReadInto(r io.Reader, limit int64, layout []tensor.ExternalTensor, dst []float32) (*File, error) {
	offs, total, err := tensor.Spec{External: layout}.ExternalOffsets()
	if err != nil {
		return nil, fmt.Errorf("safetensors.ReadInto: %w", err)
	}
	if total != len(dst) {
		return nil, fmt.Errorf("safetensors.ReadInto: dst holds %d values, the layout %d: %w", len(dst), total, ErrLayout)
	}
	f, err := ReadHeader(r, limit)
	if err != nil {
		return nil, fmt.Errorf("safetensors.ReadInto: %w", err)
	}
	where := make(map[string]int, len(layout))
	for i, t := range layout {
		where[t.Name] = i
	}
	for _, t := range f.Layout {
		i, ok := where[t.Name]
		if !ok {
			return nil, fmt.Errorf("safetensors.ReadInto: unexpected tensor %q: %w", t.Name, ErrLayout)
		}
		if !slices.Equal(t.Shape, layout[i].Shape) {
			return nil, fmt.Errorf("safetensors.ReadInto: tensor %q has shape %v, want %v: %w", t.Name, t.Shape, layout[i].Shape, ErrLayout)
		}
	}
	if len(f.Layout) != len(layout) {
		have := make(map[string]bool, len(f.Layout))
		for _, t := range f.Layout {
			have[t.Name] = true
		}
		for _, t := range layout {
			if !have[t.Name] {
				return nil, fmt.Errorf("safetensors.ReadInto: tensor %q is missing: %w", t.Name, ErrLayout)
			}
		}
	}
	for _, t := range f.Layout {
		i := where[t.Name]
		if err := readFloats(r, dst[offs[i]:offs[i]+t.Size()]); err != nil {
			return nil, fmt.Errorf("safetensors.ReadInto: tensor %q: %w", t.Name, err)
		}
	}
	if err := expectEOF(r); err != nil {
		return nil, fmt.Errorf("safetensors.ReadInto: %w", err)
	}
	return f, nil
}

// WriteFile writes params as a safetensors file at path atomically: into
// a temporary file in the same directory, synced, then renamed over path.
func WriteFile(path string, layout []tensor.ExternalTensor, params []float32, metadata map[string]string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("safetensors.WriteFile: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing to remove
	bw := bufio.NewWriterSize(tmp, 1<<20)
	_, err = Write(bw, layout, params, metadata)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("safetensors.WriteFile: %w", err)
	}
	return nil
}

// ReadModel reads a safetensors file as an external model named name: its
// layout in data order and its parameters. It is how initial weights of a
// model fedge does not run are imported.
func ReadModel(r io.Reader, limit int64, name string) (*tensor.Model, error) {
	f, params, err := Read(r, limit)
	if err != nil {
		return nil, fmt.Errorf("safetensors.ReadModel: %w", err)
	}
	spec, err := tensor.ExternalSpec(name, f.Layout)
	if err != nil {
		return nil, fmt.Errorf("safetensors.ReadModel: %w", err)
	}
	m, err := tensor.NewExternalModel(spec, params)
	if err != nil {
		return nil, fmt.Errorf("safetensors.ReadModel: %w", err)
	}
	return m, nil
}

// WriteModel writes an external model's parameters as safetensors.
func WriteModel(w io.Writer, m *tensor.Model, metadata map[string]string) (int64, error) {
	if !m.Spec.IsExternal() {
		return 0, fmt.Errorf("safetensors.WriteModel: model %q is not external: %w", m.Spec.Name, tensor.ErrInvalidSpec)
	}
	return Write(w, m.Spec.External, m.Params, metadata)
}

// expectEOF reports input left after the data.
func expectEOF(r io.Reader) error {
	var b [1]byte
	n, err := io.ReadFull(r, b[:])
	if n > 0 {
		return fmt.Errorf("trailing data after the tensors: %w", ErrFormat)
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

func readErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("truncated: %w", ErrFormat)
	}
	return err
}

// littleEndian reports whether float32 memory is already in the file's
// byte order, so data moves without conversion.
var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// asBytes views a float32 slice as its bytes.
func asBytes(p []float32) []byte {
	if len(p) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&p[0])), 4*len(p))
}

// readFloats fills dst with little-endian float32 values read from r.
func readFloats(r io.Reader, dst []float32) error {
	if littleEndian {
		_, err := io.ReadFull(r, asBytes(dst))
		return readErr(err)
	}
	var chunk [4096]byte
	for len(dst) > 0 {
		k := min(len(dst), len(chunk)/4)
		if _, err := io.ReadFull(r, chunk[:4*k]); err != nil {
			return readErr(err)
		}
		for i := range k {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(chunk[4*i:]))
		}
		dst = dst[k:]
	}
	return nil
}

// writeFloats writes src as little-endian float32 to w.
func writeFloats(w io.Writer, src []float32) (int64, error) {
	if littleEndian {
		n, err := w.Write(asBytes(src))
		return int64(n), err
	}
	var chunk [4096]byte
	var n int64
	for len(src) > 0 {
		k := min(len(src), len(chunk)/4)
		for i, v := range src[:k] {
			binary.LittleEndian.PutUint32(chunk[4*i:], math.Float32bits(v))
		}
		m, err := w.Write(chunk[:4*k])
		n += int64(m)
		if err != nil {
			return n, err
		}
		src = src[k:]
	}
	return n, nil
}
