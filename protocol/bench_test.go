package protocol

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

var (
	blobMiB      = flag.Int("blobmib", 0, "blob size in MiB for BenchmarkBlob* (default 256, 64 under -short)")
	idleSessions = flag.Int("idlesessions", 1000, "sessions opened by BenchmarkIdleSessionMemory")
)

// patternBlob is a large deterministic io.ReaderAt that costs 1 MiB of
// memory whatever its size: a random pattern of an odd length repeated, so
// no two chunks are equal.
type patternBlob struct {
	pattern []byte
	size    int64
}

func newPatternBlob(size int64) *patternBlob {
	r := rand.New(rand.NewPCG(1, 2))
	p := make([]byte, 1<<20+7)
	for i := range p {
		p[i] = byte(r.Uint32())
	}
	return &patternBlob{pattern: p, size: size}
}

func (b *patternBlob) ReadAt(dst []byte, off int64) (int, error) {
	if off >= b.size {
		return 0, io.EOF
	}
	n := 0
	for n < len(dst) && off+int64(n) < b.size {
		i := (off + int64(n)) % int64(len(b.pattern))
		c := copy(dst[n:min(len(dst), int(b.size-off))], b.pattern[i:])
		n += c
	}
	if n < len(dst) {
		return n, io.EOF
	}
	return n, nil
}

// discardAt is an io.WriterAt that drops what it gets: the receiver still
// verifies every chunk and the whole hash, but the benchmark measures the
// transport, not a 256 MiB memcpy.
type discardAt struct{}

func (discardAt) WriteAt(p []byte, _ int64) (int, error) { return len(p), nil }

func benchBlobSize(b *testing.B) int64 {
	mib := *blobMiB
	if mib == 0 {
		mib = 256
		if testing.Short() {
			mib = 64
		}
	}
	return int64(mib) << 20
}

// benchBlob prepares the blob and its manifest once per benchmark.
func benchBlob(b *testing.B) (*patternBlob, BlobInfo) {
	size := benchBlobSize(b)
	src := newPatternBlob(size)
	info, err := NewBlobInfo("bench", src, size, DefaultChunkSize)
	if err != nil {
		b.Fatal(err)
	}
	return src, info
}

func reportMBps(b *testing.B, size int64) {
	b.ReportMetric(float64(size)*float64(b.N)/b.Elapsed().Seconds()/1e6, "MB/s")
}

// BenchmarkBlobQUIC_256MiB downloads one blob per iteration over a QUIC
// bulk stream on loopback: chunking, per-chunk and whole SHA-256 checks.
func BenchmarkBlobQUIC_256MiB(b *testing.B) {
	benchBlobQUIC(b, nil)
}

// BenchmarkBlobQUICLargeWindows_256MiB is the same with much larger
// flow-control windows (8 MiB initial, 64 MiB stream / 96 MiB connection
// maximum), to check whether the defaults of Config hold throughput back.
func BenchmarkBlobQUICLargeWindows_256MiB(b *testing.B) {
	benchBlobQUIC(b, &Config{InitialStreamWindow: 8 << 20, MaxStreamWindow: 64 << 20, InitialConnWindow: 8 << 20, MaxConnWindow: 96 << 20})
}

func benchBlobQUIC(b *testing.B, cfg *Config) {
	src, info := benchBlob(b)
	pki := newTestPKI(b, "ca")
	h := HandlerFuncs{BulkFunc: func(ctx context.Context, s *Session, first Message, bs *BulkStream) error {
		return bs.ServeBlob(ctx, src, &info, first.(*ModelRequest).Offset)
	}}
	l := startListener(b, pki, cfg, map[string]Handler{ALPNAgent: h})
	s, err := Dial(context.Background(), l.Addr().String(), pki.clientTLS(b, "bench"), ALPNAgent, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.ResetTimer()
	for range b.N {
		var p BlobProgress
		if err := s.FetchBlob(context.Background(), &ModelRequest{Version: 1}, discardAt{}, &p); err != nil || !p.Done() {
			b.Fatalf("fetch: %v", err)
		}
	}
	reportMBps(b, int64(info.Size))
}

// BenchmarkBlobTCPTLS_256MiB moves the same bytes with the same bulk
// protocol over loopback TCP + TLS 1.3 (mutual, standard library), the
// baseline for the QUIC transport.
func BenchmarkBlobTCPTLS_256MiB(b *testing.B) {
	src, info := benchBlob(b)
	pki := newTestPKI(b, "ca")
	ln, err := tls.Listen("tcp", "127.0.0.1:0", pki.serverTLS(b))
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				bs := NewBulkStream(c, Limits{})
				m, err := bs.Recv()
				if err != nil {
					return
				}
				_ = bs.ServeBlob(context.Background(), src, &info, m.(*ModelRequest).Offset)
				_ = bs.CloseWrite()
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
	client := pki.clientTLS(b, "bench")
	b.ResetTimer()
	for range b.N {
		c, err := tls.Dial("tcp", ln.Addr().String(), client)
		if err != nil {
			b.Fatal(err)
		}
		bs := NewBulkStream(c, Limits{})
		if err := bs.Send(&ModelRequest{Version: 1}); err != nil {
			b.Fatal(err)
		}
		m, err := bs.Recv()
		if err != nil {
			b.Fatal(err)
		}
		var p BlobProgress
		p.Begin(*m.(*BlobInfo))
		if err := bs.RecvBlob(context.Background(), discardAt{}, &p); err != nil || !p.Done() {
			b.Fatalf("recv: %v", err)
		}
		_ = c.Close()
	}
	reportMBps(b, int64(info.Size))
}

// BenchmarkHandshakeFirstMessage measures what a reconnecting agent waits
// for: QUIC + mutual TLS 1.3 handshake, the Hello exchange, and one
// request/response on the new session.
func BenchmarkHandshakeFirstMessage(b *testing.B) {
	pki := newTestPKI(b, "ca")
	l := startListener(b, pki, nil, map[string]Handler{ALPNAgent: newAgentHandler()})
	client := pki.clientTLS(b, "agent-b")
	ctx := context.Background()
	b.ResetTimer()
	for range b.N {
		s, err := Dial(ctx, l.Addr().String(), client, ALPNAgent, &Config{Hello: Hello{AgentID: "agent-b"}})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Request(ctx, &Heartbeat{Seq: 19}); err != nil {
			b.Fatal(err)
		}
		_ = s.Close()
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/handshake")
}

// BenchmarkIdleSessionMemory opens -idlesessions agent sessions (1,000 by
// default) from a child process and reports the coordinator-side memory
// (heap plus goroutine stacks) and goroutines each idle session costs. Run with -benchtime=1x.
func BenchmarkIdleSessionMemory(b *testing.B) {
	n := *idleSessions
	pki := newTestPKI(b, "ca")
	dir := b.TempDir()
	if err := pki.save(dir); err != nil {
		b.Fatal(err)
	}
	h := newAgentHandler()
	var hellos atomic.Int64
	inner := h.HelloFunc
	h.HelloFunc = func(ctx context.Context, s *Session, m *Hello) (*HelloAck, error) {
		hellos.Add(1)
		return inner(ctx, s, m)
	}
	l := startListener(b, pki, nil, map[string]Handler{ALPNAgent: h})
	for range b.N {
		heapBefore, gBefore := settledHeap()
		cmd := exec.Command(os.Args[0], "-test.run=^TestIdleClientsHelper$", "-test.v")
		cmd.Env = append(os.Environ(), "FEDGE_IDLE_DIR="+dir, "FEDGE_IDLE_ADDR="+l.Addr().String(), "FEDGE_IDLE_N="+strconv.Itoa(n))
		stdin, _ := cmd.StdinPipe()
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		start := hellos.Load()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		deadline := time.Now().Add(2 * time.Minute)
		for hellos.Load()-start < int64(n) && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if got := hellos.Load() - start; got < int64(n) {
			b.Fatalf("only %d of %d sessions came up", got, n)
		}
		time.Sleep(time.Second) // let handshake garbage and buffers settle
		heapAfter, gAfter := settledHeap()
		b.ReportMetric(float64(heapAfter-heapBefore)/float64(n), "B/session")
		b.ReportMetric(float64(gAfter-gBefore)/float64(n), "goroutines/session")
		b.ReportMetric(float64(heapAfter-heapBefore)/float64(n)*10000/(1<<20), "MiB/10k-sessions")
		_ = stdin.Close() // the helper exits when stdin closes
		_ = cmd.Wait()
	}
}

func settledHeap() (uint64, int) {
	var ms runtime.MemStats
	for range 3 {
		runtime.GC()
	}
	runtime.ReadMemStats(&ms)
	// Goroutine stacks live outside the heap; count them too.
	return ms.HeapAlloc + ms.StackInuse, runtime.NumGoroutine()
}

// TestIdleClientsHelper is the child process of BenchmarkIdleSessionMemory:
// it opens FEDGE_IDLE_N sessions from one UDP socket and holds them until
// stdin closes. Without the environment it does nothing.
func TestIdleClientsHelper(t *testing.T) {
	dir := os.Getenv("FEDGE_IDLE_DIR")
	if dir == "" {
		t.Skip("helper process for BenchmarkIdleSessionMemory")
	}
	n, _ := strconv.Atoi(os.Getenv("FEDGE_IDLE_N"))
	pki, err := loadTestPKI(dir)
	if err != nil {
		t.Fatal(err)
	}
	// A listener only to own the shared UDP socket the sessions dial from.
	local, err := Listen("127.0.0.1:0", pki.serverTLS(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	client := pki.clientTLS(t, "idle-agent")
	sessions := make([]*Session, 0, n)
	for i := range n {
		s, err := local.Dial(context.Background(), os.Getenv("FEDGE_IDLE_ADDR"), client, ALPNAgent, &Config{Hello: Hello{AgentID: fmt.Sprintf("idle-%d", i)}})
		if err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
		sessions = append(sessions, s)
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
	for _, s := range sessions {
		_ = s.Close()
	}
}

// save writes the CA certificate and key so a child process can issue
// certificates from the same CA.
func (p *testPKI) save(dir string) error {
	if err := os.WriteFile(filepath.Join(dir, "ca.der"), p.ca.Raw, 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "ca.key"), p.key.Seed(), 0o600)
}

func loadTestPKI(dir string) (*testPKI, error) {
	der, err := os.ReadFile(filepath.Join(dir, "ca.der"))
	if err != nil {
		return nil, err
	}
	seed, err := os.ReadFile(filepath.Join(dir, "ca.key"))
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	if len(seed) != ed25519.SeedSize {
		return nil, errors.New("bad CA key")
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &testPKI{ca: ca, key: ed25519.NewKeyFromSeed(seed), pool: pool}, nil
}

// BenchmarkFixedStats784 encodes and decodes the statistics vector of a
// 784-feature dataset (count, sum, sum of squares per feature).
func BenchmarkFixedStats784(b *testing.B) {
	v := make([]float64, 3*784)
	for i := range v {
		v[i] = float64(i) * 1234.5678
	}
	b.Run("encode", func(b *testing.B) {
		for b.Loop() {
			if _, err := EncodeFixed(v); err != nil {
				b.Fatal(err)
			}
		}
	})
	x, _ := EncodeFixed(v)
	b.Run("decode", func(b *testing.B) {
		for b.Loop() {
			if _, err := DecodeFixed(x); err != nil {
				b.Fatal(err)
			}
		}
	})
}
