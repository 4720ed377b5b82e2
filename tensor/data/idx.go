package data

import (
	"bufio"
	"compress/flate"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// IDX magic numbers (big-endian): two zero bytes, the element type (0x08 is
// unsigned byte) and the number of dimensions.
const (
	idxImagesMagic = 0x00000803
	idxLabelsMagic = 0x00000801
)

// DefaultIDXMaxBytes is the body size IDXReader accepts when MaxBytes is
// zero: 1 GiB, enough for EMNIST ByClass (547 MB) and far above MNIST (47 MB).
const DefaultIDXMaxBytes = 1 << 30

// IDXImages is a stack of 8-bit images read from an IDX3 file.
type IDXImages struct {
	Count, Rows, Cols int
	Pixels            []byte // Count × Rows × Cols, row-major, one byte per pixel
}

// IDXReader decodes IDX files (raw or gzip-compressed, detected by the gzip
// magic 0x1f8b). The zero value is ready to use.
//
// The header is validated and its declared body size checked against
// MaxBytes before anything is allocated; the body buffer then grows with the
// bytes actually read, so a short file that claims a large body allocates
// only about what it holds. Trailing bytes after the body are an error.
type IDXReader struct {
	// MaxBytes bounds the body size (count × rows × cols bytes for images,
	// count bytes for labels). If zero, DefaultIDXMaxBytes.
	MaxBytes int64
}

// ReadIDXImages decodes an IDX3 image file with the default limits.
func ReadIDXImages(r io.Reader) (*IDXImages, error) { return IDXReader{}.ReadImages(r) }

// ReadIDXLabels decodes an IDX1 label file with the default limits.
func ReadIDXLabels(r io.Reader) ([]byte, error) { return IDXReader{}.ReadLabels(r) }

func (d IDXReader) limit() int64 {
	if d.MaxBytes > 0 {
		return d.MaxBytes
	}
	return DefaultIDXMaxBytes
}

// ReadImages decodes an IDX3 image file (magic 0x00000803, dimensions count,
// rows, cols). Rows and cols must be positive; count may be zero.
func (d IDXReader) ReadImages(r io.Reader) (*IDXImages, error) {
	src, closeFn, err := openIDX(r)
	if err != nil {
		return nil, fmt.Errorf("data.ReadIDXImages: %w", err)
	}
	defer closeFn()
	dims, err := readIDXHeader(src, idxImagesMagic, 3)
	if err != nil {
		return nil, fmt.Errorf("data.ReadIDXImages: %w", err)
	}
	count, rows, cols := dims[0], dims[1], dims[2]
	if rows == 0 || cols == 0 {
		return nil, fmt.Errorf("data.ReadIDXImages: image size %d×%d: %w", rows, cols, ErrFormat)
	}
	lim := uint64(d.limit())
	per := rows * cols // < 2^64: both are below 2^32
	if per > lim || (per > 0 && count > lim/per) {
		return nil, fmt.Errorf("data.ReadIDXImages: %d images of %d×%d bytes over the %d-byte limit: %w", count, rows, cols, lim, ErrLimit)
	}
	pix, err := readIDXBody(src, int64(count*per))
	if err != nil {
		return nil, fmt.Errorf("data.ReadIDXImages: %w", err)
	}
	return &IDXImages{Count: int(count), Rows: int(rows), Cols: int(cols), Pixels: pix}, nil
}

// ReadLabels decodes an IDX1 label file (magic 0x00000801, dimension count).
func (d IDXReader) ReadLabels(r io.Reader) ([]byte, error) {
	src, closeFn, err := openIDX(r)
	if err != nil {
		return nil, fmt.Errorf("data.ReadIDXLabels: %w", err)
	}
	defer closeFn()
	dims, err := readIDXHeader(src, idxLabelsMagic, 1)
	if err != nil {
		return nil, fmt.Errorf("data.ReadIDXLabels: %w", err)
	}
	if lim := uint64(d.limit()); dims[0] > lim {
		return nil, fmt.Errorf("data.ReadIDXLabels: %d labels over the %d-byte limit: %w", dims[0], lim, ErrLimit)
	}
	lab, err := readIDXBody(src, int64(dims[0]))
	if err != nil {
		return nil, fmt.Errorf("data.ReadIDXLabels: %w", err)
	}
	return lab, nil
}

// openIDX returns a reader of the decompressed bytes of r.
func openIDX(r io.Reader) (io.Reader, func(), error) {
	br := bufio.NewReaderSize(r, 64<<10)
	head, err := br.Peek(2)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil, fmt.Errorf("%d-byte file: %w", len(head), ErrTruncated)
		}
		return nil, nil, err
	}
	if head[0] != 0x1f || head[1] != 0x8b {
		return br, func() {}, nil
	}
	zr, err := gzip.NewReader(br)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, nil, fmt.Errorf("gzip header: %w", ErrTruncated)
		}
		return nil, nil, fmt.Errorf("gzip header: %v: %w", err, ErrFormat)
	}
	return zr, func() { _ = zr.Close() }, nil
}

// readIDXHeader reads and checks the magic number and the ndim dimensions.
func readIDXHeader(r io.Reader, magic uint32, ndim int) ([]uint64, error) {
	var buf [4 * 4]byte
	h := buf[:4+4*ndim]
	if _, err := io.ReadFull(r, h); err != nil {
		return nil, fmt.Errorf("header: %w", ioErr(err))
	}
	if got := binary.BigEndian.Uint32(h); got != magic {
		return nil, fmt.Errorf("magic 0x%08x, want 0x%08x: %w", got, magic, ErrFormat)
	}
	dims := make([]uint64, ndim)
	for i := range dims {
		dims[i] = uint64(binary.BigEndian.Uint32(h[4+4*i:]))
	}
	return dims, nil
}

// readIDXBody reads exactly n bytes, growing the buffer as bytes arrive,
// then checks that the input ends there.
func readIDXBody(r io.Reader, n int64) ([]byte, error) {
	const first = 1 << 20
	buf := make([]byte, 0, min(n, first))
	for int64(len(buf)) < n {
		if len(buf) == cap(buf) {
			grown := make([]byte, len(buf), min(n, 2*int64(cap(buf))))
			copy(grown, buf)
			buf = grown
		}
		m, err := io.ReadFull(r, buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if err != nil {
			return nil, fmt.Errorf("body: %d of %d bytes: %w", len(buf), n, ioErr(err))
		}
	}
	var one [1]byte
	m, err := io.ReadFull(r, one[:])
	switch {
	case m > 0:
		return nil, fmt.Errorf("trailing bytes after the %d-byte body: %w", n, ErrFormat)
	case errors.Is(err, io.EOF):
		return buf, nil
	default:
		return nil, fmt.Errorf("after body: %w", ioErr(err))
	}
}

// ioErr maps a short read to ErrTruncated and a gzip stream error to
// ErrFormat; other errors (of the underlying reader) pass through.
func ioErr(err error) error {
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return ErrTruncated
	case errors.Is(err, gzip.ErrChecksum), errors.Is(err, gzip.ErrHeader):
		return fmt.Errorf("gzip: %v: %w", err, ErrFormat)
	case errors.As(err, new(flate.CorruptInputError)):
		return fmt.Errorf("gzip: %v: %w", err, ErrFormat)
	default:
		return err
	}
}
