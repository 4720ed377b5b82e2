// Package encoding turns a model's flat []float32 parameter vector into a
// small, self-checking byte blob and back.
//
// A blob is a fixed header followed by a body. The header names the format
// version, the value codec, whether the body is a delta against a version the
// receiver already holds (named by its SHA-256 hash) and whether it is sparse,
// the element count, the int8 block size, the general-purpose compressor, and
// the SHA-256 hash of the RESULT: the little-endian float32 values the decoder
// produces. Decoding therefore proves that the receiver holds exactly what the
// sender reconstructed, whatever the lossy codec did.
//
// Value codecs:
//
//   - Float32: raw little-endian float32, lossless for a full encoding. Its
//     delta is params − base in float32 arithmetic, and base + (params −
//     base) need not equal params: a Float32 delta is not bit-exact.
//   - Float16: IEEE 754 binary16, round-to-nearest-even, with subnormals,
//     infinities, NaN and overflow handled.
//   - Int8: symmetric per-block quantization, scale = max|x|/127 stored as
//     float32 per block; round-to-nearest by default, stochastic rounding on
//     request.
//   - Float32XOR: the float32 bit patterns, XORed with the base's in a
//     delta, stored as four byte planes (every element's byte 0, then byte 1,
//     2, 3 of its little-endian uint32). Lossless full or delta, bit for bit
//     (NaN payloads, -0, Inf and subnormals included), dense only. Between
//     consecutive versions the sign, exponent and leading mantissa bits
//     rarely change, so the high planes are nearly zero and DEFLATE shrinks
//     a delta to ~55-65% of raw float32. LosslessDelta() is the options of a
//     bit-exact model push: Float32XOR + flate.
//
// Any codec but Float32XOR can be applied to the top-k entries by magnitude
// only (sparse: indices delta-coded as uvarints, values in the chosen codec),
// and the whole body can then be compressed with DEFLATE. "delta + top-k(1%) + int8 +
// flate" is Options{Codec: Int8, TopK: 0.01, Compressor: Flate} with a base.
// ErrorFeedback keeps what top-k and quantization did not send and adds it to
// the next update, so nothing is lost over rounds.
//
// Encoder and Decoder keep reusable buffers; once warmed up they do not
// allocate beyond the output (inflating excepted: compress/flate allocates a
// few small Huffman tables per block). Decoding untrusted bytes never panics and
// never allocates beyond Decoder.MaxElements (and the body size) allows.
// Decoder.Apply decodes a dense blob read from an io.ReaderAt in place
// into the base, a chunk at a time (one reader per section of the body:
// the byte planes, the int8 scales and bytes), and WriteLosslessDelta
// writes a lossless delta into an io.WriterAt from two vectors read a
// chunk at a time: neither holds more than O(chunk) whatever the size.
// Choose lets a sender pick the smallest encoding whose relative L2
// reconstruction error stays within what the operator allowed.
//
// HashParams is tensor.HashParams (SHA-256 of the little-endian float32
// bytes), so a model version's name is the same everywhere.
//
// Blob format history:
//
//	version 1: header magic "FEDM", codecs float32/float16/int8, flags delta
//	           and sparse, compressors none/flate.
//	           Later, same version: codec float32-xor (3). The layout is
//	           unchanged and a decoder that predates it rejects codec 3 with
//	           ErrUnsupported, the right failure (the sender falls back to
//	           a full model), so the version need not change.
package encoding
