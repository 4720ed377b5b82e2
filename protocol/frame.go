package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Flags is the second byte of every frame.
type Flags uint8

// Frame flags. Bits not listed here are reserved and must be zero.
const (
	// FlagRequest marks a frame that expects exactly one response frame
	// carrying the same request ID.
	FlagRequest Flags = 0x01
	// FlagResponse marks the response to the peer's request with the
	// frame's request ID.
	FlagResponse Flags = 0x02

	flagsKnown = FlagRequest | FlagResponse
)

// hasID reports whether a frame with these flags carries a request ID.
func (f Flags) hasID() bool { return f&(FlagRequest|FlagResponse) != 0 }

// maxFrameHeader is the longest frame header: type, flags, request ID and
// length (two uvarints of at most 10 bytes).
const maxFrameHeader = 2 + 2*binary.MaxVarintLen64

// Frame is one unit on a stream:
//
//	type (1 byte) | flags (1 byte) | [request ID (uvarint), if FlagRequest
//	or FlagResponse] | body length (uvarint) | body
//
// The body is the message's explicit binary layout (see Marshal).
type Frame struct {
	Type  MsgType
	Flags Flags
	// ID is the request ID; zero unless Flags has FlagRequest or
	// FlagResponse. IDs are chosen by the requester and are unique among
	// its outstanding requests.
	ID   uint64
	Body []byte
}

// appendFrameHeader appends the header for a body of n bytes.
func appendFrameHeader(dst []byte, t MsgType, flags Flags, id uint64, n int) []byte {
	dst = append(dst, byte(t), byte(flags))
	if flags.hasID() {
		dst = binary.AppendUvarint(dst, id)
	}
	return binary.AppendUvarint(dst, uint64(n))
}

// AppendFrame appends f's encoding to dst.
func AppendFrame(dst []byte, f Frame) []byte {
	dst = appendFrameHeader(dst, f.Type, f.Flags, f.ID, len(f.Body))
	return append(dst, f.Body...)
}

// EncodeFrame appends a complete frame carrying m to dst.
func EncodeFrame(dst []byte, m Message, flags Flags, id uint64, lim Limits) ([]byte, error) {
	if flags&^flagsKnown != 0 || flags&flagsKnown == flagsKnown {
		return dst, fmt.Errorf("protocol.EncodeFrame: %w: flags 0x%02x", ErrMalformed, uint8(flags))
	}
	body, err := Marshal(nil, m, lim)
	if err != nil {
		return dst, err
	}
	return AppendFrame(dst, Frame{Type: m.Type(), Flags: flags, ID: id, Body: body}), nil
}

// checkFlags validates a received flags byte.
func checkFlags(f Flags) error {
	if f&^flagsKnown != 0 {
		return fmt.Errorf("%w: reserved frame flags 0x%02x", ErrMalformed, uint8(f))
	}
	if f&flagsKnown == flagsKnown {
		return fmt.Errorf("%w: frame is both request and response", ErrMalformed)
	}
	return nil
}

// DecodeFrame parses one frame at the start of b and returns it with the
// number of bytes it used. Body aliases b. A b that ends inside the frame
// returns an error wrapping io.ErrUnexpectedEOF.
func DecodeFrame(b []byte, lim Limits) (Frame, int, error) {
	lim = lim.withDefaults()
	var f Frame
	if len(b) < 2 {
		return f, 0, fmt.Errorf("protocol.DecodeFrame: %w: header: %w", ErrMalformed, io.ErrUnexpectedEOF)
	}
	f.Type, f.Flags = MsgType(b[0]), Flags(b[1])
	if err := checkFlags(f.Flags); err != nil {
		return Frame{}, 0, fmt.Errorf("protocol.DecodeFrame: %w", err)
	}
	off := 2
	if f.Flags.hasID() {
		id, n := binary.Uvarint(b[off:])
		if n <= 0 {
			return Frame{}, 0, fmt.Errorf("protocol.DecodeFrame: %w: request ID: %w", ErrMalformed, varintErr(n))
		}
		f.ID, off = id, off+n
	}
	size, n := binary.Uvarint(b[off:])
	if n <= 0 {
		return Frame{}, 0, fmt.Errorf("protocol.DecodeFrame: %w: length: %w", ErrMalformed, varintErr(n))
	}
	off += n
	if size > uint64(lim.MaxFrame) {
		return Frame{}, 0, fmt.Errorf("protocol.DecodeFrame: %w: body of %d bytes, limit %d", ErrTooLarge, size, lim.MaxFrame)
	}
	if size > uint64(len(b)-off) {
		return Frame{}, 0, fmt.Errorf("protocol.DecodeFrame: %w: body: %w", ErrMalformed, io.ErrUnexpectedEOF)
	}
	f.Body = b[off : off+int(size)]
	return f, off + int(size), nil
}

// varintErr tells a truncated varint from an overlong one.
func varintErr(n int) error {
	if n == 0 {
		return io.ErrUnexpectedEOF
	}
	return errors.New("varint overflows 64 bits")
}

// DecodeMessage parses one frame at the start of b and its message. For an
// unknown optional type the message is nil and the error nil: skip it.
func DecodeMessage(b []byte, lim Limits) (Frame, Message, error) {
	f, _, err := DecodeFrame(b, lim)
	if err != nil {
		return Frame{}, nil, err
	}
	m, err := Unmarshal(f.Type, f.Body, lim)
	return f, m, err
}

// smallFrame is the body size up to which FrameReader allocates the whole
// body at once; longer bodies grow the buffer as bytes actually arrive, so
// a peer that announces a large frame and stalls costs little memory.
const smallFrame = 64 << 10

// FrameReader reads frames from a stream. The Body of a returned Frame is
// valid until the next ReadFrame call.
type FrameReader struct {
	r   io.Reader
	lim Limits
	hdr [maxFrameHeader]byte
	buf []byte
	// keep is the largest buffer kept between frames; bigger buffers are
	// dropped after use so an idle session does not pin a 16 MiB frame.
	keep int
}

// NewFrameReader returns a FrameReader on r. Wrap r in a bufio.Reader if
// it is not already buffered: headers are read byte by byte.
func NewFrameReader(r io.Reader, lim Limits) *FrameReader {
	return &FrameReader{r: r, lim: lim.withDefaults(), keep: smallFrame}
}

// readByte reads one header byte.
func (fr *FrameReader) readByte() (byte, error) {
	if br, ok := fr.r.(io.ByteReader); ok {
		return br.ReadByte()
	}
	if _, err := io.ReadFull(fr.r, fr.hdr[:1]); err != nil {
		return 0, err
	}
	return fr.hdr[0], nil
}

// readUvarint reads a header uvarint.
func (fr *FrameReader) readUvarint() (uint64, error) {
	var x uint64
	var s uint
	for i := 0; i < binary.MaxVarintLen64; i++ {
		b, err := fr.readByte()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
		if b < 0x80 {
			if i == binary.MaxVarintLen64-1 && b > 1 {
				break
			}
			return x | uint64(b)<<s, nil
		}
		x |= uint64(b&0x7f) << s
		s += 7
	}
	return 0, fmt.Errorf("%w: varint overflows 64 bits", ErrMalformed)
}

// ReadFrame reads the next frame. It returns io.EOF only if the stream
// ended cleanly between frames.
func (fr *FrameReader) ReadFrame() (Frame, error) {
	var f Frame
	t, err := fr.readByte()
	if err != nil {
		return f, err // io.EOF between frames is a clean end
	}
	fl, err := fr.readByte()
	if err != nil {
		return f, fmt.Errorf("protocol.ReadFrame: %w", eofUnexpected(err))
	}
	f.Type, f.Flags = MsgType(t), Flags(fl)
	if err := checkFlags(f.Flags); err != nil {
		return Frame{}, fmt.Errorf("protocol.ReadFrame: %w", err)
	}
	if f.Flags.hasID() {
		if f.ID, err = fr.readUvarint(); err != nil {
			return Frame{}, fmt.Errorf("protocol.ReadFrame: request ID: %w", err)
		}
	}
	size, err := fr.readUvarint()
	if err != nil {
		return Frame{}, fmt.Errorf("protocol.ReadFrame: length: %w", err)
	}
	if size > uint64(fr.lim.MaxFrame) {
		return Frame{}, fmt.Errorf("protocol.ReadFrame: %w: body of %d bytes, limit %d", ErrTooLarge, size, fr.lim.MaxFrame)
	}
	body, err := fr.readBody(int(size))
	if err != nil {
		return Frame{}, fmt.Errorf("protocol.ReadFrame: %v body: %w", f.Type, eofUnexpected(err))
	}
	f.Body = body
	return f, nil
}

// readBody reads n bytes into the reusable buffer, growing it at most
// geometrically with the bytes that actually arrived.
func (fr *FrameReader) readBody(n int) ([]byte, error) {
	if cap(fr.buf) > fr.keep {
		fr.buf = nil
	}
	if n <= cap(fr.buf) || n <= smallFrame {
		if n > cap(fr.buf) {
			fr.buf = make([]byte, n)
		}
		b := fr.buf[:n]
		_, err := io.ReadFull(fr.r, b)
		return b, err
	}
	b := fr.buf[:0]
	for len(b) < n {
		if len(b) == cap(b) {
			nb := make([]byte, len(b), min(n, max(2*cap(b), smallFrame)))
			copy(nb, b)
			b = nb
		}
		m, err := io.ReadFull(fr.r, b[len(b):cap(b)])
		b = b[:len(b)+m]
		if err != nil {
			return nil, err
		}
	}
	fr.buf = b
	return b, nil
}

// ReadMessage reads frames until one carries a known type, skipping
// unknown optional types. It returns the frame (Body valid until the next
// call) and its decoded message.
func (fr *FrameReader) ReadMessage() (Frame, Message, error) {
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return Frame{}, nil, err
		}
		m, err := Unmarshal(f.Type, f.Body, fr.lim)
		if err != nil {
			return f, nil, err
		}
		if m != nil {
			return f, m, nil
		}
	}
}

func eofUnexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
