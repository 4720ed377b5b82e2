package encoding

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Version is the blob format version this package writes. Decoders reject
// other versions with ErrUnsupported.
const Version = 1

// magic opens every blob.
var magic = [4]byte{'F', 'E', 'D', 'M'}

// Header sizes: a full encoding carries only the result hash, a delta also
// carries the hash of its base.
const (
	headerFixedSize = 4 + 1 + 1 + 1 + 1 + 4 + 4 + 4 + 4 + HashSize
	// HeaderSize is the size of a full (non-delta) blob's header.
	HeaderSize = headerFixedSize
	// DeltaHeaderSize is the size of a delta blob's header.
	DeltaHeaderSize = headerFixedSize + HashSize
)

// HashSize is the size of a parameter hash (SHA-256).
const HashSize = 32

// Limits on the decoder side.
const (
	// DefaultMaxElements is the element count Decoder accepts when its
	// MaxElements is zero: 64 Mi parameters (256 MiB of float32).
	DefaultMaxElements = 1 << 26
	// DefaultBlockSize is the int8 block size when Options.BlockSize is zero.
	DefaultBlockSize = 256
	// MaxBlockSize is the largest int8 block size a blob may announce.
	MaxBlockSize = 1 << 20
	// maxFlateRatio bounds how much DEFLATE can expand: a deflate stream
	// cannot encode more than 258 bytes per 2 bits (ratio ~1032:1).
	maxFlateRatio = 1032
)

// Sentinel errors, for errors.Is.
var (
	// ErrCorrupt means the blob is malformed: truncated, inconsistent sizes,
	// bad compressed stream, out-of-range indices or trailing bytes.
	ErrCorrupt = errors.New("encoding: corrupt blob")
	// ErrUnsupported means the blob uses a version, codec, compressor or flag
	// this package does not know.
	ErrUnsupported = errors.New("encoding: unsupported blob")
	// ErrTooLarge means the blob announces more elements than allowed.
	ErrTooLarge = errors.New("encoding: blob too large")
	// ErrHashMismatch means the decoded values do not hash to the hash the
	// header announced.
	ErrHashMismatch = errors.New("encoding: result hash mismatch")
	// ErrBaseMismatch means a delta blob was decoded against a base other than
	// the one it was encoded against (wrong hash or wrong length), or without
	// a base at all.
	ErrBaseMismatch = errors.New("encoding: base mismatch")
	// ErrLength means vectors that must have the same length do not.
	ErrLength = errors.New("encoding: length mismatch")
	// ErrNonFinite means the int8 codec was asked to encode NaN or Inf.
	ErrNonFinite = errors.New("encoding: non-finite value")
	// ErrOptions means Options failed validation.
	ErrOptions = errors.New("encoding: invalid options")
	// ErrNoCandidate means Choose found no candidate within the allowed error.
	ErrNoCandidate = errors.New("encoding: no candidate within the allowed error")
)

// Codec is the value codec of a blob. Values are part of the format and
// never change meaning; new codecs get new numbers.
type Codec uint8

// Value codecs.
const (
	// Float32 stores raw little-endian float32 values.
	Float32 Codec = 0
	// Float16 stores IEEE 754 binary16 values, rounded to nearest even.
	Float16 Codec = 1
	// Int8 stores per-block symmetric int8 quantization with a float32 scale
	// per block.
	Int8 Codec = 2
	// Float32XOR stores the float32 bit patterns of the vector, XORed with the
	// base's bit patterns in a delta, as four byte planes (every element's
	// byte 0, then every byte 1, 2 and 3 of its little-endian uint32). It is
	// lossless, full or delta, and dense only.
	Float32XOR Codec = 3
)

// String returns the codec name.
func (c Codec) String() string {
	switch c {
	case Float32:
		return "float32"
	case Float16:
		return "float16"
	case Int8:
		return "int8"
	case Float32XOR:
		return "float32-xor"
	}
	return fmt.Sprintf("codec(%d)", uint8(c))
}

func (c Codec) valid() bool { return c <= Float32XOR }

// Lossless reports whether c reproduces every vector bit for bit, full or
// delta. Float32 is lossless only as a full encoding: its delta is computed
// and applied in float32 arithmetic, and base + (params − base) need not
// equal params.
func (c Codec) Lossless() bool { return c == Float32XOR }

// Compressor is the general-purpose compressor applied to the body.
type Compressor uint8

// Compressors.
const (
	// NoCompression stores the body as is.
	NoCompression Compressor = 0
	// Flate compresses the body with DEFLATE (compress/flate).
	Flate Compressor = 1
)

// String returns the compressor name.
func (c Compressor) String() string {
	switch c {
	case NoCompression:
		return "none"
	case Flate:
		return "flate"
	}
	return fmt.Sprintf("compressor(%d)", uint8(c))
}

// Flags are the header's boolean properties.
type Flags uint8

// Header flags.
const (
	// FlagDelta marks a body holding params − base (for Float32XOR: the bits
	// of params XOR the bits of base); BaseHash names the base.
	FlagDelta Flags = 1 << 0
	// FlagSparse marks a top-k body: Kept indices then Kept values.
	FlagSparse Flags = 1 << 1

	knownFlags = FlagDelta | FlagSparse
)

// Header is the decoded fixed part of a blob.
//
// Layout (little-endian): magic "FEDM" (4), version (1), codec (1), flags (1),
// compressor (1), count (u32), block size (u32, int8 only, else 0), kept
// (u32, = count unless sparse), raw body length before compression (u32),
// result hash (32), base hash (32, delta only); then the body.
type Header struct {
	Version    uint8
	Codec      Codec
	Flags      Flags
	Compressor Compressor
	// Count is the number of float32 values the blob decodes to.
	Count int
	// BlockSize is the int8 quantization block size (0 for other codecs).
	BlockSize int
	// Kept is the number of stored values (Count unless FlagSparse).
	Kept int
	// RawLen is the body length before compression.
	RawLen int
	// ResultHash is HashParams of the decoded vector.
	ResultHash [HashSize]byte
	// BaseHash is HashParams of the base a delta applies to.
	BaseHash [HashSize]byte
}

// Delta reports whether the blob is a delta against a base.
func (h *Header) Delta() bool { return h.Flags&FlagDelta != 0 }

// Sparse reports whether the blob holds top-k entries only.
func (h *Header) Sparse() bool { return h.Flags&FlagSparse != 0 }

// Size is the encoded header length.
func (h *Header) Size() int {
	if h.Delta() {
		return DeltaHeaderSize
	}
	return HeaderSize
}

// IsBlob reports whether b starts with the blob magic "FEDM", of any
// version: a cheap sniff that tells a blob from other payloads sent on the
// same channel (a tensor model file starts with "FEDGEMDL"). It validates
// nothing else; Decode does.
func IsBlob(b []byte) bool {
	return len(b) >= len(magic) && [4]byte(b[:4]) == magic
}

// appendHeader appends h's encoding to dst.
func appendHeader(dst []byte, h *Header) []byte {
	dst = append(dst, magic[:]...)
	dst = append(dst, h.Version, byte(h.Codec), byte(h.Flags), byte(h.Compressor))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(h.Count))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(h.BlockSize))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(h.Kept))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(h.RawLen))
	dst = append(dst, h.ResultHash[:]...)
	if h.Delta() {
		dst = append(dst, h.BaseHash[:]...)
	}
	return dst
}

// ParseHeader decodes and validates the header of blob. It checks every field
// for internal consistency (sizes implied by count, codec, block size and
// kept) but neither decompresses nor hashes anything.
func ParseHeader(blob []byte) (Header, error) {
	var h Header
	if len(blob) < HeaderSize {
		return h, fmt.Errorf("encoding.ParseHeader: %d bytes, need %d: %w", len(blob), HeaderSize, ErrCorrupt)
	}
	if [4]byte(blob[:4]) != magic {
		return h, fmt.Errorf("encoding.ParseHeader: bad magic %q: %w", blob[:4], ErrCorrupt)
	}
	h.Version = blob[4]
	h.Codec = Codec(blob[5])
	h.Flags = Flags(blob[6])
	h.Compressor = Compressor(blob[7])
	if h.Version != Version {
		return h, fmt.Errorf("encoding.ParseHeader: version %d: %w", h.Version, ErrUnsupported)
	}
	if !h.Codec.valid() {
		return h, fmt.Errorf("encoding.ParseHeader: %v: %w", h.Codec, ErrUnsupported)
	}
	if h.Flags&^knownFlags != 0 {
		return h, fmt.Errorf("encoding.ParseHeader: flags %#x: %w", uint8(h.Flags), ErrUnsupported)
	}
	if h.Compressor > Flate {
		return h, fmt.Errorf("encoding.ParseHeader: %v: %w", h.Compressor, ErrUnsupported)
	}
	count := binary.LittleEndian.Uint32(blob[8:])
	bs := binary.LittleEndian.Uint32(blob[12:])
	kept := binary.LittleEndian.Uint32(blob[16:])
	rawLen := binary.LittleEndian.Uint32(blob[20:])
	copy(h.ResultHash[:], blob[24:24+HashSize])
	if h.Delta() {
		if len(blob) < DeltaHeaderSize {
			return h, fmt.Errorf("encoding.ParseHeader: delta header needs %d bytes, have %d: %w", DeltaHeaderSize, len(blob), ErrCorrupt)
		}
		copy(h.BaseHash[:], blob[headerFixedSize:])
	}
	if count > math.MaxInt32 || rawLen > math.MaxInt32 {
		return h, fmt.Errorf("encoding.ParseHeader: count %d, body %d bytes: %w", count, rawLen, ErrTooLarge)
	}
	if h.Codec == Int8 {
		if bs == 0 || bs > MaxBlockSize {
			return h, fmt.Errorf("encoding.ParseHeader: int8 block size %d: %w", bs, ErrCorrupt)
		}
	} else if bs != 0 {
		return h, fmt.Errorf("encoding.ParseHeader: block size %d for %v: %w", bs, h.Codec, ErrCorrupt)
	}
	if h.Sparse() && h.Codec == Float32XOR {
		// Not defined: a future format may give it a meaning.
		return h, fmt.Errorf("encoding.ParseHeader: sparse %v: %w", h.Codec, ErrUnsupported)
	}
	if kept > count || (!h.Sparse() && kept != count) {
		return h, fmt.Errorf("encoding.ParseHeader: kept %d of %d: %w", kept, count, ErrCorrupt)
	}
	vlen := valuesLen(h.Codec, uint64(kept), uint64(bs))
	minRaw, maxRaw := vlen, vlen
	if h.Sparse() {
		// Each index gap is a uvarint of at most 5 bytes (gaps are < 2^32).
		minRaw += uint64(kept)
		maxRaw += 5 * uint64(kept)
	}
	if uint64(rawLen) < minRaw || uint64(rawLen) > maxRaw {
		return h, fmt.Errorf("encoding.ParseHeader: body length %d outside [%d, %d]: %w", rawLen, minRaw, maxRaw, ErrCorrupt)
	}
	h.Count, h.BlockSize, h.Kept, h.RawLen = int(count), int(bs), int(kept), int(rawLen)
	return h, nil
}

// valuesLen is the byte length of k values in codec c (block size bs).
func valuesLen(c Codec, k, bs uint64) uint64 {
	switch c {
	case Float32, Float32XOR:
		return 4 * k
	case Float16:
		return 2 * k
	case Int8:
		return k + 4*((k+bs-1)/bs)
	}
	return 0
}
