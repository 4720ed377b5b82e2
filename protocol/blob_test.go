package protocol

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// memFile is an in-memory io.WriterAt / io.ReaderAt of fixed size.
type memFile struct {
	mu      sync.Mutex
	b       []byte
	written atomic.Int64
	onWrite func(total int64)
}

func newMemFile(size int) *memFile { return &memFile{b: make([]byte, size)} }

func (m *memFile) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	if off < 0 || off+int64(len(p)) > int64(len(m.b)) {
		m.mu.Unlock()
		return 0, errors.New("memFile: write out of range")
	}
	copy(m.b[off:], p)
	m.mu.Unlock()
	total := m.written.Add(int64(len(p)))
	if m.onWrite != nil {
		m.onWrite(total)
	}
	return len(p), nil
}

func (m *memFile) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return bytes.NewReader(m.b).ReadAt(p, off)
}

func (m *memFile) bytes() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]byte(nil), m.b...)
}

// source serves a blob, counting what it reads and optionally corrupting
// one chunk.
type source struct {
	data      []byte
	read      atomic.Int64
	minOff    atomic.Int64
	corruptAt int64 // byte offset flipped on read, -1 for none
	onRead    func(off int64)
}

func newSource(data []byte) *source {
	s := &source{data: data, corruptAt: -1}
	s.minOff.Store(int64(len(data)))
	return s
}

func (s *source) ReadAt(p []byte, off int64) (int, error) {
	if s.onRead != nil {
		s.onRead(off)
	}
	n, err := bytes.NewReader(s.data).ReadAt(p, off)
	s.read.Add(int64(n))
	for {
		cur := s.minOff.Load()
		if off >= cur || s.minOff.CompareAndSwap(cur, off) {
			break
		}
	}
	if s.corruptAt >= off && s.corruptAt < off+int64(n) {
		p[s.corruptAt-off] ^= 0x55
	}
	return n, err
}

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// modelServer answers ModelRequest bulk streams from src.
func modelServer(info *BlobInfo, src func() io.ReaderAt) Handler {
	return HandlerFuncs{BulkFunc: func(ctx context.Context, s *Session, first Message, b *BulkStream) error {
		req, ok := first.(*ModelRequest)
		if !ok {
			return &Error{Code: CodeUnsupported}
		}
		if req.Version != 18 {
			return &Error{Code: CodeNotFound, Message: "no such model version"}
		}
		return b.ServeBlob(ctx, src(), info, req.Offset)
	}}
}

func TestBlobDownloadResumesAfterCut(t *testing.T) {
	const size, chunk = 4<<20 + 12345, 128 << 10
	data := randomBytes(t, size)
	info, err := NewBlobInfo("model/18", bytes.NewReader(data), size, chunk)
	if err != nil {
		t.Fatal(err)
	}
	var cur atomic.Pointer[source]
	pki := newTestPKI(t, "ca")
	l := startListener(t, pki, nil, map[string]Handler{ALPNAgent: modelServer(&info, func() io.ReaderAt {
		s := newSource(data)
		cur.Store(s)
		return s
	})})

	ctx := testCtx(t)
	dst := newMemFile(size)
	var p BlobProgress

	// First connection: cut at ~50% by closing the connection under the
	// transfer.
	s1 := dialAgent(t, pki, l, "a", nil)
	var once sync.Once
	dst.onWrite = func(total int64) {
		if total >= size/2 {
			once.Do(func() { _ = s1.Close() })
		}
	}
	err = s1.FetchBlob(ctx, &ModelRequest{Version: 18, Offset: p.Offset}, dst, &p)
	if err == nil {
		t.Fatal("transfer survived a closed connection")
	}
	cut := p.Offset
	if cut < size/2 || cut >= size || cut%chunk != 0 || p.Done() {
		t.Fatalf("after cut: offset %d of %d, done %v", cut, size, p.Done())
	}
	dst.onWrite = nil

	// Second connection resumes from the verified prefix.
	s2 := dialAgent(t, pki, l, "a", nil)
	if err := s2.FetchBlob(ctx, &ModelRequest{Version: 18, Offset: p.Offset}, dst, &p); err != nil {
		t.Fatal(err)
	}
	if !p.Done() || p.Offset != size {
		t.Fatalf("not done: offset %d", p.Offset)
	}
	if got := sha256.Sum256(dst.bytes()); Hash(got) != info.Hash || !bytes.Equal(dst.bytes(), data) {
		t.Fatal("received blob differs")
	}
	src2 := cur.Load()
	if src2.minOff.Load() != int64(cut) || src2.read.Load() != int64(size)-int64(cut) {
		t.Fatalf("second transfer read %d bytes from %d; want %d from %d", src2.read.Load(), src2.minOff.Load(), size-int64(cut), cut)
	}

	// A request the server rejects comes back as its Error.
	var p2 BlobProgress
	if err := s2.FetchBlob(ctx, &ModelRequest{Version: 99}, newMemFile(1), &p2); !errors.Is(err, &Error{Code: CodeNotFound}) {
		t.Fatalf("err = %v, want not found", err)
	}
}

func TestBlobCorruptChunkDetected(t *testing.T) {
	const size, chunk = 1<<20 + 7, 64 << 10
	data := randomBytes(t, size)
	info, err := NewBlobInfo("model/18", bytes.NewReader(data), size, chunk)
	if err != nil {
		t.Fatal(err)
	}
	var corrupt atomic.Bool
	corrupt.Store(true)
	pki := newTestPKI(t, "ca")
	l := startListener(t, pki, nil, map[string]Handler{ALPNAgent: modelServer(&info, func() io.ReaderAt {
		s := newSource(data)
		if corrupt.Load() {
			s.corruptAt = 3*chunk + 100 // a bit flip inside chunk 3
		}
		return s
	})})
	s := dialAgent(t, pki, l, "a", nil)
	ctx := testCtx(t)
	dst := newMemFile(size)
	var p BlobProgress
	err = s.FetchBlob(ctx, &ModelRequest{Version: 18}, dst, &p)
	if !errors.Is(err, ErrHashMismatch) {
		t.Fatalf("err = %v, want hash mismatch", err)
	}
	if p.Offset != 3*chunk {
		t.Fatalf("verified prefix %d, want %d", p.Offset, 3*chunk)
	}
	got := dst.bytes()
	if !bytes.Equal(got[:3*chunk], data[:3*chunk]) || !bytes.Equal(got[3*chunk:4*chunk], make([]byte, chunk)) {
		t.Fatal("the corrupted chunk (or a later one) reached the destination")
	}
	// The server's replica is repaired; the retry fetches from chunk 3 on.
	corrupt.Store(false)
	if err := s.FetchBlob(ctx, &ModelRequest{Version: 18, Offset: p.Offset}, dst, &p); err != nil {
		t.Fatal(err)
	}
	if !p.Done() || !bytes.Equal(dst.bytes(), data) {
		t.Fatal("repaired download differs")
	}
}

func TestBlobUploadResumes(t *testing.T) {
	const size, chunk = 4<<20 + 3, 128 << 10
	data := randomBytes(t, size)
	info, err := NewBlobInfo("round/7/update/agent-u", bytes.NewReader(data), size, chunk)
	if err != nil {
		t.Fatal(err)
	}
	// The coordinator keeps one progress per (round, agent) across
	// connections.
	var mu sync.Mutex
	progress := map[string]*BlobProgress{}
	dst := newMemFile(size)
	served := make(chan error, 4)
	h := HandlerFuncs{BulkFunc: func(ctx context.Context, s *Session, first Message, b *BulkStream) error {
		mu_, ok := first.(*MaskedUpdate)
		if !ok {
			return &Error{Code: CodeUnsupported}
		}
		key := s.PeerHello().AgentID + "/" + mu_.Blob.ID
		mu.Lock()
		p := progress[key]
		if p == nil {
			p = &BlobProgress{}
			progress[key] = p
		}
		mu.Unlock()
		p.Begin(mu_.Blob)
		err := b.AcceptBlob(ctx, dst, p)
		served <- err
		return err
	}}
	pki := newTestPKI(t, "ca")
	l := startListener(t, pki, nil, map[string]Handler{ALPNAgent: h})
	s := dialAgent(t, pki, l, "agent-u", nil)

	// First attempt: the agent gives up half way (its ctx ends).
	src := newSource(data)
	ctx1, cancel1 := context.WithCancel(testCtx(t))
	src.onRead = func(off int64) {
		if off >= size/2 {
			cancel1()
		}
	}
	err = s.PushBlob(ctx1, &MaskedUpdate{RoundID: 7, Elements: size / 4, Blob: info}, src, &info)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want cancelled", err)
	}
	if serr := <-served; serr == nil {
		t.Fatal("receiver finished a cut upload")
	}
	mu.Lock()
	got := progress["agent-u/"+info.ID].Offset
	mu.Unlock()
	if got == 0 || got >= size {
		t.Fatalf("receiver kept %d bytes", got)
	}

	// Second attempt resumes where the receiver stands.
	src2 := newSource(data)
	if err := s.PushBlob(testCtx(t), &MaskedUpdate{RoundID: 7, Elements: size / 4, Blob: info}, src2, &info); err != nil {
		t.Fatal(err)
	}
	if serr := <-served; serr != nil {
		t.Fatal(serr)
	}
	if src2.minOff.Load() != int64(got) {
		t.Fatalf("resumed upload started at %d, receiver had %d", src2.minOff.Load(), got)
	}
	if !bytes.Equal(dst.bytes(), data) {
		t.Fatal("uploaded blob differs")
	}
}

func TestNewBlobInfoAndRestore(t *testing.T) {
	const chunk = 4096
	for _, size := range []int{0, 1, chunk - 1, chunk, chunk + 1, 3*chunk + 17} {
		data := randomBytes(t, size)
		info, err := NewBlobInfo("b", bytes.NewReader(data), int64(size), chunk)
		if err != nil {
			t.Fatal(err)
		}
		if info.Hash != sha256.Sum256(data) || uint64(len(info.Chunks)) != info.NumChunks() || info.NumChunks() != uint64((size+chunk-1)/chunk) {
			t.Fatalf("size %d: manifest %+v", size, info)
		}
		// The manifest is itself a valid message.
		if _, err := Marshal(nil, &info, Limits{}); err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		// Restore from a complete copy: done.
		var p BlobProgress
		if err := p.Restore(bytes.NewReader(data), info, uint64(size)); err != nil || !p.Done() || p.Offset != uint64(size) {
			t.Fatalf("size %d: restore full: %v done=%v off=%d", size, err, p.Done(), p.Offset)
		}
	}
	// Restore from a copy whose chunk 2 is damaged: keep chunks 0 and 1.
	data := randomBytes(t, 5*chunk)
	info, _ := NewBlobInfo("b", bytes.NewReader(data), int64(len(data)), chunk)
	damaged := append([]byte(nil), data...)
	damaged[2*chunk+5] ^= 1
	var p BlobProgress
	if err := p.Restore(bytes.NewReader(damaged), info, uint64(len(data))); err != nil || p.Offset != 2*chunk || p.Done() {
		t.Fatalf("restore damaged: %v off=%d", err, p.Offset)
	}
	// A partial chunk on disk is not kept.
	if err := p.Restore(bytes.NewReader(data), info, chunk+100); err != nil || p.Offset != chunk {
		t.Fatalf("restore partial: %v off=%d", err, p.Offset)
	}
	// Begin with the same manifest keeps the prefix, with another resets.
	if !p.Begin(info) || p.Offset != chunk {
		t.Fatal("Begin dropped a resumable prefix")
	}
	other := info
	other.Hash[0] ^= 1
	if p.Begin(other) || p.Offset != 0 {
		t.Fatal("Begin kept a prefix of another blob")
	}
	if _, err := NewBlobInfo("b", bytes.NewReader(nil), 0, 100); err == nil {
		t.Fatal("chunk size below the minimum accepted")
	}
}

// TestBlobOverPlainConn runs the bulk protocol over a net.Conn (as the
// TCP+TLS benchmark does) and checks the failure modes of RecvBlob.
func TestBlobOverPlainConn(t *testing.T) {
	const size, chunk = 100_000, 8192
	data := randomBytes(t, size)
	info, _ := NewBlobInfo("x", bytes.NewReader(data), size, chunk)
	run := func(send func(b *BulkStream)) (*BlobProgress, []byte, error) {
		a, b := net.Pipe()
		go func() {
			bs := NewBulkStream(a, Limits{})
			send(bs)
			_ = a.Close()
		}()
		var p BlobProgress
		p.Begin(info)
		dst := newMemFile(size)
		err := NewBulkStream(b, Limits{}).RecvBlob(testCtx(t), dst, &p)
		_ = b.Close()
		return &p, dst.bytes(), err
	}
	p, got, err := run(func(b *BulkStream) { _ = b.SendBlob(context.Background(), bytes.NewReader(data), &info, 0) })
	if err != nil || !p.Done() || !bytes.Equal(got, data) {
		t.Fatalf("plain transfer: %v", err)
	}
	tests := []struct {
		name string
		send func(b *BulkStream)
		want error
	}{
		{"error frame", func(b *BulkStream) { _ = b.Send(&Error{Code: CodeBusy}) }, &Error{Code: CodeBusy}},
		{"wrong offset", func(b *BulkStream) { _ = b.Send(&BlobChunk{Offset: chunk, Data: data[chunk : 2*chunk]}) }, ErrMalformed},
		{"short chunk", func(b *BulkStream) { _ = b.Send(&BlobChunk{Offset: 0, Data: data[:chunk-1]}) }, ErrMalformed},
		{"other message", func(b *BulkStream) { _ = b.Send(&Ack{}) }, ErrMalformed},
		{"truncated", func(b *BulkStream) { _ = b.Send(&BlobChunk{Offset: 0, Data: data[:chunk]}) }, io.ErrUnexpectedEOF},
		{"corrupt", func(b *BulkStream) {
			bad := append([]byte(nil), data[:chunk]...)
			bad[0] ^= 1
			_ = b.Send(&BlobChunk{Offset: 0, Data: bad})
		}, ErrHashMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := run(tt.send)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

// FuzzRecvBlob feeds arbitrary bytes to the chunk receiver of a small
// manifest: it must fail cleanly and never write outside the blob, and it
// may only succeed with the exact blob. Its seeds are ~10 KB streams, so
// run it with a short -fuzzminimizetime (e.g. 3s): minimizing an input that
// large otherwise takes most of a short fuzzing run.
func FuzzRecvBlob(f *testing.F) {
	data := []byte("0123456789abcdef")
	data = bytes.Repeat(data, 600) // 9,600 bytes: chunks of 4096, 4096, 1408
	info, err := NewBlobInfo("fz", bytes.NewReader(data), int64(len(data)), 4096)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, stream []byte) {
		var p BlobProgress
		p.Begin(info)
		dst := newMemFile(len(data))
		b := &BulkStream{rw: struct {
			io.Reader
			io.Writer
		}{bytes.NewReader(stream), io.Discard}, lim: fuzzLimits.withDefaults(), setDeadline: func(time.Time) error { return nil },
			closeWrite: func() error { return nil }, abort: func() {}}
		b.fr = NewFrameReader(b.rw, b.lim)
		err := b.RecvBlob(context.Background(), dst, &p)
		if err == nil && (!p.Done() || !bytes.Equal(dst.bytes(), data)) {
			t.Fatal("RecvBlob succeeded with the wrong bytes")
		}
		if p.Offset > info.Size || p.Offset%uint64(info.ChunkSize) != 0 && p.Offset != info.Size {
			t.Fatalf("offset %d", p.Offset)
		}
	})
}

// TestFuzzRecvBlobSeeds writes (with -update) and checks the seeds of
// FuzzRecvBlob: a valid stream, a corrupted one, an error frame.
func TestFuzzRecvBlobSeeds(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 600)
	info, _ := NewBlobInfo("fz", bytes.NewReader(data), int64(len(data)), 4096)
	var valid bytes.Buffer
	bs := &BulkStream{rw: &valid, lim: DefaultLimits()}
	if err := bs.SendBlob(context.Background(), bytes.NewReader(data), &info, 0); err != nil {
		t.Fatal(err)
	}
	corrupt := append([]byte(nil), valid.Bytes()...)
	corrupt[len(corrupt)-10] ^= 1
	errFrame, _ := EncodeFrame(nil, &Error{Code: CodeBusy, Message: "later"}, 0, 0, Limits{})
	seeds := map[string][]byte{"valid": valid.Bytes(), "corrupt-last-chunk": corrupt, "error-frame": errFrame}
	for name, b := range seeds {
		if *update {
			writeSeed(t, "FuzzRecvBlob", name, corpusFile(b))
		}
		if _, err := readSeedFile(t, "FuzzRecvBlob", name); err != nil {
			t.Errorf("seed %s: %v (run with -update)", name, err)
		}
	}
}

func TestMemBlob(t *testing.T) {
	m := MemBlob{Limit: 10}
	if _, err := m.WriteAt([]byte("world"), 5); err != nil {
		t.Fatal(err)
	}
	if _, err := m.WriteAt([]byte("hello"), 0); err != nil {
		t.Fatal(err)
	}
	if string(m.Bytes()) != "helloworld" {
		t.Fatalf("%q", m.Bytes())
	}
	if _, err := m.WriteAt([]byte("!"), 10); err == nil {
		t.Fatal("a write past the limit")
	}
	if _, err := m.WriteAt([]byte("x"), -1); err == nil {
		t.Fatal("a write at a negative offset")
	}
	m.Reset()
	if len(m.Bytes()) != 0 {
		t.Fatal("reset kept bytes")
	}
}

// TestMemBlobGrowthStaysWithinLimit: growing the buffer geometrically must
// not allocate past Limit (a 60 MiB blob under a 100 MiB limit once
// reserved 120 MiB).
func TestMemBlobGrowthStaysWithinLimit(t *testing.T) {
	const limit = 100
	m := MemBlob{Limit: limit}
	for off := 0; off < limit; off += 30 {
		n := min(30, limit-off)
		if _, err := m.WriteAt(make([]byte, n), int64(off)); err != nil {
			t.Fatal(err)
		}
		if c := cap(m.Bytes()); c > limit {
			t.Fatalf("after %d bytes the buffer holds %d, over the limit %d", off+n, c, limit)
		}
	}
	if len(m.Bytes()) != limit {
		t.Fatalf("len %d", len(m.Bytes()))
	}
	if _, err := m.WriteAt([]byte{1}, limit); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("a write past the limit: %v, want ErrTooLarge", err)
	}
}
