package coordinator

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"testing"

	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/protocol/stagedriver"
)

// failingReader fails every read at or past cut, like an agent whose
// connection breaks mid-upload.
type failingReader struct {
	b   []byte
	cut int64
}

func (r failingReader) ReadAt(p []byte, off int64) (int, error) {
	if off >= r.cut {
		return 0, errors.New("connection lost")
	}
	return bytes.NewReader(r.b).ReadAt(p, off)
}

// pushOver uploads payload (read through src) to us over an in-memory
// bulk stream, as the agent's session and the node's handler would.
func pushOver(t *testing.T, us *uploads, agent string, payload []byte, src io.ReaderAt) error {
	t.Helper()
	info, err := protocol.NewBlobInfo("round/1/masked-input", bytes.NewReader(payload), int64(len(payload)), 4096)
	if err != nil {
		t.Fatal(err)
	}
	hdr := &protocol.MaskedUpdate{RoundID: 1, Elements: uint64(len(payload)), Blob: info}
	c1, c2 := net.Pipe()
	server, client := protocol.NewBulkStream(c1, protocol.Limits{}), protocol.NewBulkStream(c2, protocol.Limits{})
	done := make(chan error, 1)
	go func() {
		err := us.accept(context.Background(), agent, hdr, server, func() bool { return agent != "stranger" })
		if err != nil {
			server.Abort() // the node's bulk handler reports it and ends the stream
		} else {
			server.Close()
		}
		done <- err
	}()
	m, err := client.Recv()
	if err != nil {
		client.Abort()
		<-done
		return err
	}
	if _, ok := m.(*protocol.BlobResume); !ok {
		t.Fatalf("got %v, want BlobResume", m.Type())
	}
	if err := client.SendBlob(context.Background(), src, &info, m.(*protocol.BlobResume).Offset); err != nil {
		client.Abort()
		<-done
		return err
	}
	if _, err := client.Recv(); err != nil {
		return err
	}
	return <-done
}

// byteSum is an in-memory twin of a round's running sum: bytes added
// modulo 256 at their offset, enough to see that every byte of an upload
// is in the sum exactly once, or not at all.
type byteSum struct {
	mu       sync.Mutex
	sum      []byte
	finished map[string]bool
}

func (s *byteSum) Stream(agent string, undo bool) (stagedriver.MaskedWriter, error) {
	return &byteSumWriter{s: s, agent: agent, undo: undo}, nil
}

type byteSumWriter struct {
	s     *byteSum
	agent string
	undo  bool
	pos   int
}

func (w *byteSumWriter) Write(p []byte) (int, error) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	if w.pos+len(p) > len(w.s.sum) {
		return 0, errors.New("past the end")
	}
	for i, b := range p {
		if w.undo {
			w.s.sum[w.pos+i] -= b
		} else {
			w.s.sum[w.pos+i] += b
		}
	}
	w.pos += len(p)
	return len(p), nil
}

func (w *byteSumWriter) Finish() error {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	if w.undo || w.pos != len(w.s.sum) || w.s.finished[w.agent] {
		return errors.New("unfinished or second input")
	}
	w.s.finished[w.agent] = true
	return nil
}

func (s *byteSum) equals(want []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Equal(s.sum, want)
}

func randomPayload(n int, seed uint64) []byte {
	payload := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, 2))
	for i := range payload {
		payload[i] = byte(r.Uint32())
	}
	return payload
}

// TestUploadResumes: a masked upload cut halfway resumes from the
// verified prefix, and the sum holds each of its bytes once.
func TestUploadResumes(t *testing.T) {
	us := uploads{dir: t.TempDir()}
	payload := randomPayload(40_000, 1)
	if err := us.take("a"); err == nil {
		t.Fatal("an upload before the stage")
	}
	sum := &byteSum{sum: make([]byte, len(payload)), finished: map[string]bool{}}
	us.expect(uint64(len(payload)), sum)
	if err := pushOver(t, &us, "a", payload, failingReader{payload, 20_480}); err == nil {
		t.Fatal("a cut upload succeeded")
	}
	if err := us.take("a"); err == nil {
		t.Fatal("a cut upload was handed to the stage")
	}
	if got := us.by["a"].p.Offset; got != 20_480 {
		t.Fatalf("kept %d bytes of the cut upload, want 20480", got)
	}
	if want := append(append([]byte(nil), payload[:20_480]...), make([]byte, len(payload)-20_480)...); !sum.equals(want) {
		t.Fatal("the sum does not hold exactly the verified prefix of the cut upload")
	}
	if err := pushOver(t, &us, "a", payload, bytes.NewReader(payload)); err != nil {
		t.Fatal(err)
	}
	if err := us.take("a"); err != nil {
		t.Fatal(err)
	}
	if !sum.equals(payload) {
		t.Fatal("after the resumed upload the sum is not the upload, once")
	}
	if err := us.take("a"); err == nil {
		t.Fatal("an upload taken twice")
	}
	if err := pushOver(t, &us, "a", payload, bytes.NewReader(payload)); err == nil {
		t.Fatal("a second upload of a taken input")
	}
	// Too large for the round, or from an agent outside it: refused.
	if err := pushOver(t, &us, "b", append(payload, 0), bytes.NewReader(append(payload, 0))); err == nil {
		t.Fatal("an upload larger than the round's masked input")
	}
	if err := pushOver(t, &us, "stranger", payload, bytes.NewReader(payload)); err == nil {
		t.Fatal("an upload from an agent outside the round")
	}
	if err := us.close(); err != nil {
		t.Fatal(err)
	}
	if !sum.equals(payload) {
		t.Fatal("closing the stage changed a taken input")
	}
}

// TestUploadDropoutLeavesSum: the bytes of an upload that was cut and
// never resumed, or completed but never taken by a MaskedInput message
// (the agent dropped out), leave the sum when the stage closes, and no
// chunk is added after.
func TestUploadDropoutLeavesSum(t *testing.T) {
	us := uploads{dir: t.TempDir()}
	a, b, c := randomPayload(30_000, 3), randomPayload(30_000, 4), randomPayload(30_000, 5)
	sum := &byteSum{sum: make([]byte, len(a)), finished: map[string]bool{}}
	us.expect(uint64(len(a)), sum)
	if err := pushOver(t, &us, "a", a, failingReader{a, 12_288}); err == nil {
		t.Fatal("a cut upload succeeded")
	}
	if err := pushOver(t, &us, "b", b, bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	if err := pushOver(t, &us, "c", c, bytes.NewReader(c)); err != nil {
		t.Fatal(err)
	}
	if err := us.take("c"); err != nil {
		t.Fatal(err)
	}
	if err := us.close(); err != nil {
		t.Fatal(err)
	}
	if !sum.equals(c) {
		t.Fatal("the sum holds more than the one taken upload")
	}
	if err := pushOver(t, &us, "a", a, bytes.NewReader(a)); err == nil {
		t.Fatal("an upload resumed after the stage closed")
	}
	if !sum.equals(c) {
		t.Fatal("a chunk was added after the stage closed")
	}
}
