package encoding

import (
	"encoding/binary"
	"math"
)

// histSize is the bucket count of one radix-select pass (16 bits).
const histSize = 1 << 16

// keepCount is how many of n entries a top-k fraction keeps: ceil(frac·n),
// at least one when n > 0.
func keepCount(frac float64, n int) int {
	if n == 0 {
		return 0
	}
	k := int(math.Ceil(frac * float64(n)))
	return max(1, min(n, k))
}

// selectTopK appends to idx, in ascending order, the indices of the k entries
// of x with the largest magnitude; among entries equal to the k-th largest
// magnitude the lowest indices win. It runs in O(n) time whatever the data:
// a radix select on the bits of |x| (two 16-bit histogram passes find the
// exact k-th largest magnitude) and one pass to collect. hist must hold
// histSize counters.
func selectTopK(idx []uint32, x []float32, k int, hist []uint32) []uint32 {
	if k <= 0 {
		return idx
	}
	if k >= len(x) {
		for i := range x {
			idx = append(idx, uint32(i))
		}
		return idx
	}
	hist = hist[:histSize]

	// Pass 1: histogram of the high 16 bits of |x| (NaN sorts above Inf).
	clear(hist)
	for _, v := range x {
		hist[(math.Float32bits(v)&0x7fffffff)>>16]++
	}
	var hi, above int
	for b := histSize - 1; b >= 0; b-- {
		c := int(hist[b])
		if above+c >= k {
			hi = b
			break
		}
		above += c
	}

	// Pass 2: histogram of the low 16 bits inside bucket hi.
	clear(hist)
	for _, v := range x {
		a := math.Float32bits(v) & 0x7fffffff
		if int(a>>16) == hi {
			hist[a&0xffff]++
		}
	}
	var lo int
	for b := histSize - 1; b >= 0; b-- {
		c := int(hist[b])
		if above+c >= k {
			lo = b
			break
		}
		above += c
	}
	t := uint32(hi)<<16 | uint32(lo)
	ties := k - above // entries equal to t that are kept

	// Pass 3: collect, in index order.
	for i, v := range x {
		a := math.Float32bits(v) & 0x7fffffff
		if a > t {
			idx = append(idx, uint32(i))
		} else if a == t && ties > 0 {
			ties--
			idx = append(idx, uint32(i))
		}
	}
	return idx
}

// appendIndices appends strictly increasing indices as uvarint gaps: the
// first index, then each difference minus one.
func appendIndices(dst []byte, idx []uint32) []byte {
	prev := uint32(0)
	for i, v := range idx {
		g := v
		if i > 0 {
			g = v - prev - 1
		}
		dst = binary.AppendUvarint(dst, uint64(g))
		prev = v
	}
	return dst
}

// decodeIndices reads len(idx) uvarint gaps from src into idx, checking that
// every index is below n. It returns the number of bytes read.
func decodeIndices(idx []uint32, src []byte, n int) (int, error) {
	off := 0
	next := uint64(0) // smallest index the next entry may take
	for i := range idx {
		g, w := binary.Uvarint(src[off:])
		if w <= 0 {
			return 0, ErrCorrupt
		}
		off += w
		if g >= uint64(n) {
			return 0, ErrCorrupt
		}
		pos := next + g
		if pos >= uint64(n) {
			return 0, ErrCorrupt
		}
		idx[i] = uint32(pos)
		next = pos + 1
	}
	return off, nil
}
