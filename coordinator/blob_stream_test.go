package coordinator

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/fedge/fedge/protocol"
)

// TestBlobInfoWriter checks the streamed manifest against NewBlobInfo's
// for sizes around the chunk size, written in uneven pieces.
func TestBlobInfoWriter(t *testing.T) {
	cs := protocol.DefaultChunkSize
	rng := rand.New(rand.NewPCG(3, 4))
	for _, size := range []int{0, 1, cs - 1, cs, cs + 1, 3*cs + 17} {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		want, err := protocol.NewBlobInfo("", bytes.NewReader(data), int64(size), 0)
		if err != nil {
			t.Fatal(err)
		}
		w := newBlobInfoWriter()
		for p := data; len(p) > 0; {
			k := min(len(p), 1+rng.IntN(cs/3))
			w.Write(p[:k])
			p = p[k:]
		}
		if got := w.finish(); !reflect.DeepEqual(got, want) {
			t.Fatalf("size %d: manifest %+v, want %+v", size, got.Hash, want.Hash)
		}
	}
}

// TestSpoolBlob stores a blob of unknown name in a FileBlobs and in a
// MemBlobs, and checks that a failed write leaves no file behind.
func TestSpoolBlob(t *testing.T) {
	dir := t.TempDir()
	fb, err := OpenFileBlobs(dir)
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("fedge"), 400_000)
	for _, s := range []BlobStore{fb, NewMemBlobs()} {
		info, err := spoolBlob(s, func(w io.Writer) error {
			_, err := w.Write(data)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		h := hex.EncodeToString(info.Hash[:])
		got, err := readBlobRange(s, h, 0, int64(len(data)))
		if err != nil || !bytes.Equal(got, data) || info.Size != uint64(len(data)) {
			t.Fatalf("%T: blob %s read back %d bytes (%v)", s, h, len(got), err)
		}
	}
	boom := errors.New("boom")
	if _, err := spoolBlob(fb, func(w io.Writer) error { w.Write(data); return boom }); !errors.Is(err, boom) {
		t.Fatalf("failed write: %v", err)
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), spoolPrefix) {
			t.Fatalf("a failed spool left %s", e.Name())
		}
	}
	if len(ents) != 1 {
		t.Fatalf("%d files in the store, want the one blob", len(ents))
	}
}
