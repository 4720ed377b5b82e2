package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/protocol/encoding"
)

func TestDecodeDownload(t *testing.T) {
	base, _ := smallModel(t, 1)
	next, nextFile := smallModel(t, 2)
	// A model file passes through.
	file, m, err := decodeDownload(nextFile, nil)
	if err != nil || !bytes.Equal(file, nextFile) || m.Hash() != next.Hash() {
		t.Fatalf("model file: %v", err)
	}
	// A lossless delta rebuilds exactly the model, on the base's spec.
	delta, err := encoding.Encode(next.Params, base.Params, encoding.LosslessDelta())
	if err != nil {
		t.Fatal(err)
	}
	file, m, err = decodeDownload(delta, base)
	if err != nil {
		t.Fatal(err)
	}
	if m.Hash() != next.Hash() || !bytes.Equal(file, nextFile) {
		t.Fatalf("delta rebuilt hash %x, file equal %v", m.Hash(), bytes.Equal(file, nextFile))
	}
	// Without the base, or against another one, it fails.
	if _, _, err := decodeDownload(delta, nil); err == nil {
		t.Fatal("delta without a base accepted")
	}
	if _, _, err := decodeDownload(delta, next); err == nil {
		t.Fatal("delta against the wrong base accepted")
	}
}

// TestDownloadGoesToAModelFile: a rollout's download lands in
// DataDir/models as a file named by its SHA-256 (the store's record only
// names it), the served model is read back from it after a restart of
// the store, and a file no record names any more is removed.
func TestDownloadGoesToAModelFile(t *testing.T) {
	m1, blob1 := smallModel(t, 7)
	m2, blob2 := smallModel(t, 8)
	h := newHub(map[uint64][]byte{1: blob1, 2: blob2})
	a := roundAgent(t, synthData(20, 12, 3, 3), 0)
	tw := &twin{agent: a.ID(), hub: h}
	ctx := context.Background()
	if err := a.syncModel(ctx, tw, &protocol.ModelAnnounce{Version: 1, Hash: m1.Hash()}); err != nil {
		t.Fatal(err)
	}
	cur, err := a.st.model(keyCurrent)
	if err != nil || cur == nil {
		t.Fatal(cur, err)
	}
	sum1 := sha256.Sum256(blob1)
	if cur.file != hex.EncodeToString(sum1[:]) || cur.blob != nil {
		t.Fatalf("the record holds %d bytes inline and names %q, want the file %x", len(cur.blob), cur.file, sum1)
	}
	if got, err := os.ReadFile(filepath.Join(a.st.files.dir, cur.file)); err != nil || !bytes.Equal(got, blob1) {
		t.Fatalf("model file: %v", err)
	}
	if err := a.syncModel(ctx, tw, &protocol.ModelAnnounce{Version: 2, Hash: m2.Hash()}); err != nil {
		t.Fatal(err)
	}
	files := func() []string {
		ents, _ := os.ReadDir(a.st.files.dir)
		var out []string
		for _, e := range ents {
			out = append(out, e.Name())
		}
		return out
	}
	if got := files(); len(got) != 2 {
		t.Fatalf("model files %v, want the current and the previous one", got)
	}
	// A third version pushes the first out of the records: its file goes.
	m3, blob3 := smallModel(t, 9)
	h.mu.Lock()
	h.models[3] = blob3
	h.mu.Unlock()
	if err := a.syncModel(ctx, tw, &protocol.ModelAnnounce{Version: 3, Hash: m3.Hash()}); err != nil {
		t.Fatal(err)
	}
	for _, f := range files() {
		if f == cur.file {
			t.Fatal("the file of a model no record names stayed")
		}
	}
	rec, _ := a.st.model(keyCurrent)
	sm, err := newServedModel(a.st.files, rec)
	if err != nil || sm.model.Hash() != m3.Hash() {
		t.Fatalf("serving from the model file: %v", err)
	}
}
