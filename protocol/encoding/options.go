package encoding

import (
	"compress/flate"
	"fmt"
	"math"
	"strings"
)

// Flate levels used when Options.Level is zero, chosen by codec and body
// size. On quantized model bodies level 1 (BestSpeed) compresses dense
// int8/float16 bodies as well as the library default (6) at about 3x the
// speed, while on sparse top-k bodies level 6 saves another ~6% and the
// bodies are small enough that its cost does not matter (see
// BenchmarkFlateLevel).
const (
	// SmallBodyFlateLevel applies to bodies below FlateLevelThreshold bytes.
	SmallBodyFlateLevel = flate.DefaultCompression
	// LargeBodyFlateLevel applies to larger bodies.
	LargeBodyFlateLevel = flate.BestSpeed
	// FlateLevelThreshold separates small and large bodies.
	FlateLevelThreshold = 1 << 20
	// LosslessFlateLevel applies to Float32XOR bodies of any size. Its
	// bodies are byte planes of raw mantissa bits, not quantized codes. On
	// real consecutive MNIST versions (BenchmarkLosslessLevel), level 6 is
	// 1.5% (2nn: 434 against 441 kB) to 3.9% (cnn: 4.36 against 4.54 MB)
	// smaller than level 1, at ~35-45 MB/s of encoding against ~150 and
	// ~140 MB/s of decoding against ~220; levels 7-9 gain under 0.5% more at
	// up to 7x level 6's time, HuffmanOnly loses 5-11%. A model push is
	// encoded once per (version, base) and served to every agent of a round
	// (the coordinator caches it), so the bytes, multiplied by the agents on
	// the coordinator's uplink, outweigh one encoding. It is 6, the level
	// flate.DefaultCompression stands for, spelled so that it is a valid
	// Options.Level.
	LosslessFlateLevel = 6
)

// Options selects how a vector is encoded. The zero value is a full, raw,
// uncompressed float32 encoding: lossless.
type Options struct {
	// Codec is the value codec.
	Codec Codec
	// TopK, when in (0, 1], keeps only the ceil(TopK·n) entries of largest
	// magnitude (at least one) and sends them sparse: uvarint index gaps,
	// then the values in Codec. Zero means dense. Float32XOR is dense only.
	TopK float64
	// BlockSize is the int8 block size; zero means DefaultBlockSize. Ignored
	// by the other codecs.
	BlockSize int
	// Stochastic selects stochastic rounding for int8 (unbiased, driven by a
	// PCG generator seeded with Seed); the default is round-to-nearest-even,
	// which is deterministic.
	Stochastic bool
	// Seed seeds stochastic rounding; vary it between calls.
	Seed uint64
	// Compressor compresses the body after the value codec. A body that
	// does not shrink is stored as is (the header then says NoCompression).
	Compressor Compressor
	// Level is the DEFLATE level (flate.HuffmanOnly, or 1 to 9); zero picks
	// LosslessFlateLevel for Float32XOR, else SmallBodyFlateLevel or
	// LargeBodyFlateLevel by body size.
	Level int
}

// Validate reports whether o is usable, wrapping ErrOptions.
func (o Options) Validate() error {
	switch {
	case !o.Codec.valid():
		return fmt.Errorf("encoding.Options: codec %d: %w", uint8(o.Codec), ErrOptions)
	case math.IsNaN(o.TopK) || o.TopK < 0 || o.TopK > 1:
		return fmt.Errorf("encoding.Options: TopK %v outside [0, 1]: %w", o.TopK, ErrOptions)
	case o.TopK > 0 && o.Codec == Float32XOR:
		return fmt.Errorf("encoding.Options: TopK %v with %v, which is dense only: %w", o.TopK, o.Codec, ErrOptions)
	case o.BlockSize < 0 || o.BlockSize > MaxBlockSize:
		return fmt.Errorf("encoding.Options: block size %d outside [0, %d]: %w", o.BlockSize, MaxBlockSize, ErrOptions)
	case o.Compressor > Flate:
		return fmt.Errorf("encoding.Options: compressor %d: %w", uint8(o.Compressor), ErrOptions)
	case o.Level != flate.HuffmanOnly && (o.Level < 0 || o.Level > flate.BestCompression):
		return fmt.Errorf("encoding.Options: flate level %d: %w", o.Level, ErrOptions)
	}
	return nil
}

// blockSize is the effective int8 block size (0 for other codecs).
func (o *Options) blockSize() int {
	if o.Codec != Int8 {
		return 0
	}
	if o.BlockSize == 0 {
		return DefaultBlockSize
	}
	return o.BlockSize
}

// level is the effective DEFLATE level for a body of rawLen bytes.
func (o *Options) level(rawLen int) int {
	switch {
	case o.Level != 0:
		return o.Level
	case o.Codec == Float32XOR:
		return LosslessFlateLevel
	case rawLen < FlateLevelThreshold:
		return SmallBodyFlateLevel
	}
	return LargeBodyFlateLevel
}

// String names the encoding compactly, e.g. "int8/256+top1%+flate".
func (o Options) String() string {
	var b strings.Builder
	b.WriteString(o.Codec.String())
	if o.Codec == Int8 {
		fmt.Fprintf(&b, "/%d", o.blockSize())
		if o.Stochastic {
			b.WriteString("/sr")
		}
	}
	if o.TopK > 0 {
		fmt.Fprintf(&b, "+top%g%%", 100*o.TopK)
	}
	if o.Compressor == Flate {
		b.WriteString("+flate")
		if o.Level != 0 {
			fmt.Fprintf(&b, "%d", o.Level)
		}
	}
	return b.String()
}
