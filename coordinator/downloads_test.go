package coordinator

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/protocol/encoding"
	"github.com/fedge/fedge/tensor"
)

// twoVersions returns the model files of a 2nn and of the same model after
// a small update, as consecutive versions of a job look.
func twoVersions(t *testing.T) (base, next *tensor.Model, baseFile, nextFile []byte) {
	t.Helper()
	spec, err := tensor.NamedSpec("2nn")
	if err != nil {
		t.Fatal(err)
	}
	base, err = tensor.NewModel(spec, 1)
	if err != nil {
		t.Fatal(err)
	}
	next = base.Clone()
	r := rand.New(rand.NewPCG(1, 2))
	for i := range next.Params {
		next.Params[i] += float32(r.NormFloat64() * 1e-3)
	}
	if baseFile, err = base.MarshalBinary(); err != nil {
		t.Fatal(err)
	}
	if nextFile, err = next.MarshalBinary(); err != nil {
		t.Fatal(err)
	}
	return base, next, baseFile, nextFile
}

func TestDownloadsDeltaIsLosslessAndCached(t *testing.T) {
	base, next, baseFile, nextFile := twoVersions(t)
	var d downloads
	bh := base.Hash()
	blob, id := d.blob(2, "h2", nextFile, bh, baseFile)
	if len(blob) >= len(nextFile)*3/4 || id == "model/h2" {
		t.Fatalf("delta of %d bytes (id %s) for a %d-byte model", len(blob), id, len(nextFile))
	}
	got, err := encoding.Decode(blob, base.Params)
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if got[i] != next.Params[i] {
			t.Fatalf("parameter %d: %v, want %v", i, got[i], next.Params[i])
		}
	}
	// The next agent gets the very same bytes (resumption relies on it).
	again, id2 := d.blob(2, "h2", nextFile, bh, baseFile)
	if !bytes.Equal(again, blob) || id2 != id || &again[0] != &blob[0] {
		t.Fatal("a second request was encoded again, or differently")
	}
	// Without the base, or with a base of another architecture: the file.
	if b, id := d.blob(2, "h2", nextFile, protocol.Hash{}, nil); !bytes.Equal(b, nextFile) || id != "model/h2" {
		t.Fatalf("no base: %d bytes, id %s", len(b), id)
	}
	other, err := tensor.NewModel(tensor.Spec{Input: []int{784}, Layers: []tensor.LayerSpec{{Type: tensor.LayerDense, Units: 10}}}, 3)
	if err != nil {
		t.Fatal(err)
	}
	otherFile, _ := other.MarshalBinary()
	if b, _ := d.blob(2, "h2", nextFile, other.Hash(), otherFile); !bytes.Equal(b, nextFile) {
		t.Fatal("a delta against another architecture")
	}
	if len(d.cache) > deltaCacheSize {
		t.Fatalf("cache of %d entries", len(d.cache))
	}
}
