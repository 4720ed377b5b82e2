package secagg

import (
	"encoding/binary"
	"fmt"
	"io"
)

// EncodedLen is the length in bytes of the message's encoding (what
// MarshalBinary returns).
func (m *MaskedInput) EncodedLen() int64 { return maskedHeaderSize + 4*int64(len(m.Y)) }

// ReadAt reads the message's encoding (MarshalBinary's bytes) at off
// without building it: a client uploads a large masked input from Y
// itself, a chunk at a time, instead of from a second copy in bytes. It
// implements io.ReaderAt.
func (m *MaskedInput) ReadAt(p []byte, off int64) (int, error) {
	size := m.EncodedLen()
	if off < 0 {
		return 0, fmt.Errorf("secagg.MaskedInput.ReadAt: %w: offset %d", ErrMalformed, off)
	}
	if off >= size {
		return 0, io.EOF
	}
	n := 0
	if off < maskedHeaderSize {
		h := header(typeMaskedInput, &m.Round, 8)
		h = put32(h, m.From)
		h = put32(h, uint32(len(m.Y)))
		k := copy(p, h[off:])
		n += k
		off += int64(k)
	}
	for n < len(p) && off < size {
		body := off - maskedHeaderSize
		i, r := int(body/4), int(body%4)
		if r == 0 && len(p)-n >= 4 {
			w := min((len(p)-n)/4, len(m.Y)-i)
			for j, y := range m.Y[i : i+w] {
				binary.LittleEndian.PutUint32(p[n+4*j:], y)
			}
			n += 4 * w
			off += 4 * int64(w)
			continue
		}
		var b [4]byte
		binary.LittleEndian.PutUint32(b[:], m.Y[i])
		k := copy(p[n:], b[r:])
		n += k
		off += int64(k)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
