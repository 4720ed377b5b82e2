package encoding

import (
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"math"

	"github.com/fedge/fedge/tensor"
)

// appendFloat32 appends x as little-endian float32 to dst.
func appendFloat32(dst []byte, x []float32) []byte {
	if b, ok := leBytes(x); ok {
		return append(dst, b...)
	}
	return appendFloat32Generic(dst, x)
}

func appendFloat32Generic(dst []byte, x []float32) []byte {
	off := len(dst)
	dst = grow(dst, 4*len(x))
	putFloat32Generic(dst[off:off+4*len(x)], x)
	return dst
}

// putFloat32 writes x as little-endian float32 to out.
func putFloat32(out []byte, x []float32) {
	if b, ok := leBytes(x); ok {
		copy(out, b)
		return
	}
	putFloat32Generic(out, x)
}

func putFloat32Generic(out []byte, x []float32) {
	out = out[:4*len(x)]
	for i, v := range x {
		binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(v))
	}
}

// decodeFloat32 decodes len(dst) little-endian float32 values from src.
func decodeFloat32(dst []float32, src []byte) {
	if b, ok := leBytes(dst); ok {
		copy(b, src[:len(b)])
		return
	}
	decodeFloat32Generic(dst, src)
}

func decodeFloat32Generic(dst []float32, src []byte) {
	src = src[:4*len(dst)]
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
	}
}

// HashParams returns the SHA-256 hash of p's little-endian float32 bytes: the
// name of a model version, and what a blob's ResultHash and BaseHash hold.
// It is tensor.HashParams, the model registry's name for a version.
func HashParams(p []float32) [HashSize]byte { return tensor.HashParams(p) }

// floatHasher hashes float32 slices as little-endian bytes, in pieces,
// without allocating once created.
type floatHasher struct {
	h   hash.Hash
	out []byte
	buf [4096]byte
}

func (f *floatHasher) reset() {
	if f.h == nil {
		f.h = sha256.New()
		f.out = make([]byte, 0, HashSize)
	}
	f.h.Reset()
}

func (f *floatHasher) write(p []float32) {
	if b, ok := leBytes(p); ok {
		f.h.Write(b)
		return
	}
	for len(p) > 0 {
		n := min(len(p), len(f.buf)/4)
		f.h.Write(appendFloat32Generic(f.buf[:0], p[:n]))
		p = p[n:]
	}
}

func (f *floatHasher) sum() [HashSize]byte {
	f.out = f.h.Sum(f.out[:0])
	return [HashSize]byte(f.out)
}
