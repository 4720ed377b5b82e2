package coordinator

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"testing"

	"github.com/fedge/fedge/protocol"
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

// TestUploadResumes: a masked upload cut halfway resumes from the
// verified prefix, and the stage takes exactly the bytes sent.
func TestUploadResumes(t *testing.T) {
	var us uploads
	payload := make([]byte, 40_000)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range payload {
		payload[i] = byte(r.Uint32())
	}
	if _, err := us.take("a"); err == nil {
		t.Fatal("an upload before the stage")
	}
	us.expect(uint64(len(payload)))
	if err := pushOver(t, &us, "a", payload, failingReader{payload, 20_480}); err == nil {
		t.Fatal("a cut upload succeeded")
	}
	if _, err := us.take("a"); err == nil {
		t.Fatal("a cut upload was handed to the stage")
	}
	if got := us.by["a"].p.Offset; got != 20_480 {
		t.Fatalf("kept %d bytes of the cut upload, want 20480", got)
	}
	if err := pushOver(t, &us, "a", payload, bytes.NewReader(payload)); err != nil {
		t.Fatal(err)
	}
	got, err := us.take("a")
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("took %d bytes (%v)", len(got), err)
	}
	if _, err := us.take("a"); err == nil {
		t.Fatal("an upload taken twice")
	}
	// Too large for the round, or from an agent outside it: refused.
	if err := pushOver(t, &us, "b", append(payload, 0), bytes.NewReader(append(payload, 0))); err == nil {
		t.Fatal("an upload larger than the round's masked input")
	}
	if err := pushOver(t, &us, "stranger", payload, bytes.NewReader(payload)); err == nil {
		t.Fatal("an upload from an agent outside the round")
	}
}
