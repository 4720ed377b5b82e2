package protocol

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
)

// Errors of bulk transfers.
var (
	// ErrHashMismatch means a chunk or a whole blob did not match its
	// manifest. The receiver keeps the verified prefix; a retry resumes
	// at the bad chunk.
	ErrHashMismatch = errors.New("protocol: blob hash mismatch")
	// ErrBlobChanged means the sender now serves a different blob than the
	// one a resumed download started; the progress was reset to offset 0.
	ErrBlobChanged = errors.New("protocol: blob changed since the transfer started")
)

// Stream error codes used when a bulk stream is reset.
const (
	streamAborted quic.StreamErrorCode = 1
)

// BulkStream is one transfer stream: a first message telling the receiver
// what it is for, then frames (usually a BlobInfo and BlobChunks). Blobs
// move chunk by chunk from an io.ReaderAt to an io.WriterAt, so neither
// side holds more than one chunk plus the QUIC flow-control window.
type BulkStream struct {
	rw          io.ReadWriter
	fr          *FrameReader
	lim         Limits
	setDeadline func(time.Time) error
	closeWrite  func() error
	abort       func()

	mu       sync.Mutex
	finished bool
}

func newBulkStream(str *quic.Stream, lim Limits) *BulkStream {
	b := &BulkStream{
		rw: str, lim: lim.withDefaults(), setDeadline: str.SetDeadline,
		closeWrite: str.Close,
		abort: func() {
			str.CancelRead(streamAborted)
			str.CancelWrite(streamAborted)
		},
	}
	b.fr = NewFrameReader(str, b.lim)
	b.fr.keep = b.lim.MaxFrame
	return b
}

// NewBulkStream runs the bulk protocol over any reliable byte stream, such
// as TLS over TCP; Abort closes c, Close half-closes it if c supports
// CloseWrite.
func NewBulkStream(c net.Conn, lim Limits) *BulkStream {
	b := &BulkStream{
		rw: c, lim: lim.withDefaults(), setDeadline: c.SetDeadline,
		closeWrite: func() error {
			if cw, ok := c.(interface{ CloseWrite() error }); ok {
				return cw.CloseWrite()
			}
			return nil
		},
		abort: func() { _ = c.Close() },
	}
	b.fr = NewFrameReader(c, b.lim)
	b.fr.keep = b.lim.MaxFrame
	return b
}

// Send writes one message frame.
func (b *BulkStream) Send(m Message) error {
	buf, err := EncodeFrame(nil, m, 0, 0, b.lim)
	if err != nil {
		return err
	}
	if _, err := b.rw.Write(buf); err != nil {
		return fmt.Errorf("protocol.BulkStream.Send %v: %w", m.Type(), err)
	}
	return nil
}

// Recv reads the next message, skipping unknown optional types.
func (b *BulkStream) Recv() (Message, error) {
	_, m, err := b.fr.ReadMessage()
	if err != nil {
		return nil, fmt.Errorf("protocol.BulkStream.Recv: %w", err)
	}
	return m, nil
}

// recvReply reads a message and turns a peer's Error or Redirect into an
// error.
func (b *BulkStream) recvReply() (Message, error) {
	m, err := b.Recv()
	if err != nil {
		return nil, err
	}
	switch e := m.(type) {
	case *Error:
		return nil, e
	case *Redirect:
		return nil, e
	}
	return m, nil
}

// SetDeadline sets the read and write deadline of the stream.
func (b *BulkStream) SetDeadline(t time.Time) error { return b.setDeadline(t) }

// CloseWrite finishes the sending direction; the peer reads EOF after the
// last frame.
func (b *BulkStream) CloseWrite() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.finished {
		return nil
	}
	b.finished = true
	return b.closeWrite()
}

// Close finishes the sending direction and stops receiving.
func (b *BulkStream) Close() error {
	err := b.CloseWrite()
	if str, ok := b.rw.(*quic.Stream); ok {
		str.CancelRead(0)
	}
	return err
}

// Abort resets both directions; pending reads and writes fail at once.
func (b *BulkStream) Abort() {
	b.mu.Lock()
	b.finished = true
	b.mu.Unlock()
	b.abort()
}

// watch aborts the stream when ctx ends and returns the function that
// stops watching.
func (b *BulkStream) watch(ctx context.Context) func() bool {
	return context.AfterFunc(ctx, b.Abort)
}

// ctxErr prefers ctx's error when the stream failed because ctx ended.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// NewBlobInfo reads size bytes from src once and returns their manifest.
// chunkSize 0 means DefaultChunkSize.
func NewBlobInfo(id string, src io.ReaderAt, size int64, chunkSize int) (BlobInfo, error) {
	if chunkSize == 0 {
		chunkSize = DefaultChunkSize
	}
	if chunkSize < minChunkSize || size < 0 {
		return BlobInfo{}, fmt.Errorf("protocol.NewBlobInfo: chunk size %d or size %d out of range", chunkSize, size)
	}
	info := BlobInfo{ID: id, Size: uint64(size), ChunkSize: uint32(chunkSize)}
	whole := sha256.New()
	buf := make([]byte, min(int64(chunkSize), size))
	info.Chunks = make([]Hash, 0, info.NumChunks())
	for off := int64(0); off < size; off += int64(chunkSize) {
		chunk := buf[:min(int64(chunkSize), size-off)]
		if _, err := src.ReadAt(chunk, off); err != nil && !(errors.Is(err, io.EOF) && off+int64(len(chunk)) == size) {
			return BlobInfo{}, fmt.Errorf("protocol.NewBlobInfo: %w", err)
		}
		info.Chunks = append(info.Chunks, sha256.Sum256(chunk))
		whole.Write(chunk)
	}
	whole.Sum(info.Hash[:0])
	return info, nil
}

// BlobProgress is a receiver's state of one blob; keep it across
// connections to resume. Offset is the verified prefix (a multiple of the
// chunk size until the blob is complete).
type BlobProgress struct {
	Info   BlobInfo
	Offset uint64

	whole    hash.Hash // SHA-256 of [0, Offset)
	verified bool
}

// Begin prepares p to receive info. If p already holds a prefix of the same
// blob it keeps it and returns true; otherwise it starts over.
func (p *BlobProgress) Begin(info BlobInfo) (resumed bool) {
	if p.whole != nil && sameBlob(&p.Info, &info) {
		return true
	}
	p.Info, p.Offset, p.whole, p.verified = info, 0, sha256.New(), false
	return false
}

// Restore rebuilds p from a prefix written by an earlier process: it
// re-reads [0, offset) from r and keeps the chunks that still match info,
// so a restarted agent resumes where its disk says.
func (p *BlobProgress) Restore(r io.ReaderAt, info BlobInfo, offset uint64) error {
	p.Info, p.Offset, p.whole, p.verified = info, 0, sha256.New(), false
	lim := DefaultLimits()
	if err := info.validate(&lim); err != nil {
		return fmt.Errorf("protocol.BlobProgress.Restore: %w", err)
	}
	cs := uint64(info.ChunkSize)
	offset = min(offset, info.Size)
	buf := make([]byte, min(cs, info.Size))
	for p.Offset < offset {
		n := min(cs, info.Size-p.Offset)
		if p.Offset+n > offset {
			break // a partial chunk is fetched again
		}
		chunk := buf[:n]
		if _, err := r.ReadAt(chunk, int64(p.Offset)); err != nil && !(errors.Is(err, io.EOF) && p.Offset+n == info.Size) {
			return fmt.Errorf("protocol.BlobProgress.Restore: %w", err)
		}
		if sha256.Sum256(chunk) != info.Chunks[p.Offset/cs] {
			break
		}
		p.whole.Write(chunk)
		p.Offset += n
	}
	if p.Offset == info.Size {
		if p.checkWhole() != nil {
			p.Offset, p.whole = 0, sha256.New()
			return nil
		}
		p.verified = true
	}
	return nil
}

// Done reports whether the whole blob arrived and matched its hash.
func (p *BlobProgress) Done() bool { return p.verified }

func (p *BlobProgress) checkWhole() error {
	var sum Hash
	p.whole.Sum(sum[:0])
	if sum != p.Info.Hash {
		return fmt.Errorf("%w: whole blob %s is %v, manifest says %v", ErrHashMismatch, p.Info.ID, sum, p.Info.Hash)
	}
	return nil
}

// uvarintLen returns the encoded length of v.
func uvarintLen(v uint64) int {
	n := 1
	for ; v >= 0x80; v >>= 7 {
		n++
	}
	return n
}

func sameBlob(a, b *BlobInfo) bool {
	return a.Size == b.Size && a.ChunkSize == b.ChunkSize && a.Hash == b.Hash && slices.Equal(a.Chunks, b.Chunks)
}

// SendBlob writes the chunks of src from offset (a multiple of the chunk
// size) to the end, one chunk buffer at a time; the stream's flow control
// paces it.
func (b *BulkStream) SendBlob(ctx context.Context, src io.ReaderAt, info *BlobInfo, offset uint64) error {
	cs := uint64(info.ChunkSize)
	if cs == 0 || offset%cs != 0 && offset != info.Size || offset > info.Size {
		return fmt.Errorf("protocol.BulkStream.SendBlob: %w: offset %d for chunk size %d, size %d", ErrMalformed, offset, cs, info.Size)
	}
	defer b.watch(ctx)()
	// Room for the frame header and the chunk offset in front of the data:
	// one Write per chunk and no copy of the data.
	const reserve = maxFrameHeader + binary.MaxVarintLen64
	buf := make([]byte, reserve+int(min(cs, info.Size)))
	var hdr [reserve]byte
	for off := offset; off < info.Size; off += cs {
		n := min(cs, info.Size-off)
		h := appendFrameHeader(hdr[:0], TypeBlobChunk, 0, 0, uvarintLen(off)+int(n))
		h = binary.AppendUvarint(h, off)
		start := reserve - len(h)
		copy(buf[start:], h)
		data := buf[reserve : reserve+int(n)]
		if _, err := src.ReadAt(data, int64(off)); err != nil && !(errors.Is(err, io.EOF) && off+n == info.Size) {
			return fmt.Errorf("protocol.BulkStream.SendBlob: read at %d: %w", off, err)
		}
		if _, err := b.rw.Write(buf[start : reserve+int(n)]); err != nil {
			return fmt.Errorf("protocol.BulkStream.SendBlob: %w", ctxErr(ctx, err))
		}
	}
	return nil
}

// RecvBlob reads chunks into dst until p's blob is complete, checking each
// chunk against the manifest as it lands and the whole blob at the end.
// Call p.Begin first. On error p keeps the verified prefix.
func (b *BulkStream) RecvBlob(ctx context.Context, dst io.WriterAt, p *BlobProgress) error {
	if p.whole == nil {
		return errors.New("protocol.BulkStream.RecvBlob: BlobProgress.Begin not called")
	}
	if err := p.Info.validate(&b.lim); err != nil {
		return fmt.Errorf("protocol.BulkStream.RecvBlob: %w", err)
	}
	defer b.watch(ctx)()
	cs := uint64(p.Info.ChunkSize)
	for p.Offset < p.Info.Size {
		f, err := b.fr.ReadFrame()
		if err != nil {
			return fmt.Errorf("protocol.BulkStream.RecvBlob: at %d: %w", p.Offset, ctxErr(ctx, eofUnexpected(err)))
		}
		if f.Type != TypeBlobChunk {
			m, err := Unmarshal(f.Type, f.Body, b.lim)
			if e, ok := m.(*Error); ok && err == nil {
				return e
			}
			if m == nil && err == nil {
				continue // unknown optional frame
			}
			return fmt.Errorf("protocol.BulkStream.RecvBlob: %w: %v frame among chunks (%v)", ErrMalformed, f.Type, err)
		}
		off, n := binary.Uvarint(f.Body)
		if n <= 0 {
			return fmt.Errorf("protocol.BulkStream.RecvBlob: %w: chunk offset", ErrMalformed)
		}
		data := f.Body[n:]
		if off != p.Offset {
			return fmt.Errorf("protocol.BulkStream.RecvBlob: %w: chunk at %d, expected %d", ErrMalformed, off, p.Offset)
		}
		if want := min(cs, p.Info.Size-off); uint64(len(data)) != want {
			return fmt.Errorf("protocol.BulkStream.RecvBlob: %w: chunk at %d has %d bytes, expected %d", ErrMalformed, off, len(data), want)
		}
		if i := off / cs; sha256.Sum256(data) != p.Info.Chunks[i] {
			return fmt.Errorf("protocol.BulkStream.RecvBlob: %w: chunk %d of %s", ErrHashMismatch, i, p.Info.ID)
		}
		if _, err := dst.WriteAt(data, int64(off)); err != nil {
			return fmt.Errorf("protocol.BulkStream.RecvBlob: write at %d: %w", off, err)
		}
		p.whole.Write(data)
		p.Offset += uint64(len(data))
	}
	if err := p.checkWhole(); err != nil {
		// Every chunk matched but the whole did not: the manifest itself
		// is inconsistent, so nothing received can be trusted.
		p.Offset, p.whole = 0, sha256.New()
		return fmt.Errorf("protocol.BulkStream.RecvBlob: %w", err)
	}
	p.verified = true
	return nil
}

// ServeBlob answers a download request: it sends the manifest, then the
// chunks from offset. The caller (a ServeBulk handler) takes offset from
// the request, e.g. ModelRequest.Offset.
func (b *BulkStream) ServeBlob(ctx context.Context, src io.ReaderAt, info *BlobInfo, offset uint64) error {
	if err := b.Send(info); err != nil {
		return err
	}
	return b.SendBlob(ctx, src, info, offset)
}

// AcceptBlob answers an upload header whose manifest the caller passed to
// p.Begin: it tells the sender to resume at p.Offset, receives the rest
// into dst and confirms with an Ack (or an Error naming the failure).
func (b *BulkStream) AcceptBlob(ctx context.Context, dst io.WriterAt, p *BlobProgress) error {
	if p.whole == nil {
		return errors.New("protocol.BulkStream.AcceptBlob: BlobProgress.Begin not called")
	}
	if err := b.Send(&BlobResume{Offset: p.Offset}); err != nil {
		return err
	}
	if err := b.RecvBlob(ctx, dst, p); err != nil {
		return err // serveBulk reports it to the sender as an Error
	}
	return b.Send(&Ack{})
}

// FetchBlob downloads a blob: it opens a bulk stream with req (which must
// ask for the chunks from p.Offset, e.g. ModelRequest{Offset: p.Offset}),
// reads the manifest and the chunks into dst. After a failure, call it
// again with the same p, on this or a new session, to resume.
func (s *Session) FetchBlob(ctx context.Context, req Message, dst io.WriterAt, p *BlobProgress) error {
	b, err := s.OpenBulk(ctx, req)
	if err != nil {
		return err
	}
	defer b.Close()
	stop := b.watch(ctx)
	m, err := b.recvReply()
	stop()
	if err != nil {
		return fmt.Errorf("protocol.Session.FetchBlob: %w", ctxErr(ctx, err))
	}
	info, ok := m.(*BlobInfo)
	if !ok {
		return fmt.Errorf("protocol.Session.FetchBlob: %w: got %v, want BlobInfo", ErrMalformed, m.Type())
	}
	wasResuming := p.whole != nil && p.Offset > 0
	if !p.Begin(*info) && wasResuming {
		return fmt.Errorf("protocol.Session.FetchBlob: %w", ErrBlobChanged)
	}
	return b.RecvBlob(ctx, dst, p)
}

// PushBlob uploads a blob: it opens a bulk stream with header (e.g. a
// MaskedUpdate carrying info), sends the chunks from the offset the
// receiver asks for, and waits for its Ack. Calling it again after a
// failure resumes where the receiver's BlobProgress stands.
func (s *Session) PushBlob(ctx context.Context, header Message, src io.ReaderAt, info *BlobInfo) error {
	b, err := s.OpenBulk(ctx, header)
	if err != nil {
		return err
	}
	defer b.Close()
	defer b.watch(ctx)()
	m, err := b.recvReply()
	if err != nil {
		return fmt.Errorf("protocol.Session.PushBlob: %w", ctxErr(ctx, err))
	}
	resume, ok := m.(*BlobResume)
	if !ok {
		return fmt.Errorf("protocol.Session.PushBlob: %w: got %v, want BlobResume", ErrMalformed, m.Type())
	}
	if err := b.SendBlob(ctx, src, info, resume.Offset); err != nil {
		return err
	}
	if _, err := b.recvReply(); err != nil {
		return fmt.Errorf("protocol.Session.PushBlob: %w", ctxErr(ctx, err))
	}
	return nil
}

// MemBlob is an io.WriterAt over a growing byte slice, bounded by Limit: a
// blob received into memory (FetchBlob, AcceptBlob). The transfer checks
// sizes and hashes; Limit bounds what a peer can make it allocate.
type MemBlob struct {
	// Limit is the largest size accepted; zero means DefaultMaxBlob.
	Limit int64
	b     []byte
}

// WriteAt implements io.WriterAt.
func (m *MemBlob) WriteAt(p []byte, off int64) (int, error) {
	limit := m.Limit
	if limit <= 0 {
		limit = DefaultMaxBlob
	}
	end := off + int64(len(p))
	if off < 0 || end > limit {
		return 0, fmt.Errorf("protocol.MemBlob: %w: write at %d of %d bytes exceeds %d", ErrTooLarge, off, len(p), limit)
	}
	if end > int64(len(m.b)) {
		if end > int64(cap(m.b)) {
			// Grow geometrically, but never past the limit.
			nb := make([]byte, end, min(max(end, 2*int64(cap(m.b))), limit))
			copy(nb, m.b)
			m.b = nb
		} else {
			m.b = m.b[:end]
		}
	}
	copy(m.b[off:], p)
	return len(p), nil
}

// Bytes returns what was written (the slice is the buffer itself).
func (m *MemBlob) Bytes() []byte { return m.b }

// Reset empties the buffer, keeping its memory.
func (m *MemBlob) Reset() { m.b = m.b[:0] }
