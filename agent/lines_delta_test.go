package agent

import (
	"context"
	"testing"

	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/tensor"
)

// wideModel is a model of line name with 12 inputs, a hidden layer of
// 64 and 3 classes (1,027 parameters).
func wideModel(t *testing.T, name string, seed uint64) *tensor.Model {
	t.Helper()
	spec := tensor.Spec{Name: name, Input: []int{12}, Layers: []tensor.LayerSpec{
		{Type: tensor.LayerDense, Units: 64}, {Type: tensor.LayerReLU}, {Type: tensor.LayerDense, Units: 3}}}
	m, err := tensor.NewModel(spec, seed)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestLineDownloadsDelta: a new version of a model line other than the
// default one downloads as a lossless delta against the version the line
// serves, as the default line's do, not as a full model file; the bytes
// received say which.
func TestLineDownloadsDelta(t *testing.T) {
	small, _ := namedModel(t, "small", 1) // the default line
	o2 := wideModel(t, "other", 2)
	o3 := o2.Clone()
	for i := 0; i < len(o3.Params); i += 100 {
		o3.Params[i] += 0.5 // a round's small change
	}
	d4 := small.Clone()
	d4.Params[0] += 0.5
	files := map[uint64][]byte{1: modelBlob(t, small), 2: modelBlob(t, o2), 3: modelBlob(t, o3), 4: modelBlob(t, d4)}
	h := newHub(files)
	a := roundAgent(t, synthData(20, 12, 3, 3), 0)
	tw := &twin{agent: a.ID(), hub: h}
	sync := func(v uint64, m *tensor.Model, line string) uint64 {
		t.Helper()
		before := a.m.modelBytes.Load()
		if err := a.syncModel(context.Background(), tw, &protocol.ModelAnnounce{Version: v, Hash: m.Hash(), Name: line}); err != nil {
			t.Fatalf("rollout of %d on %q: %v", v, line, err)
		}
		return a.m.modelBytes.Load() - before
	}
	sync(1, small, "small")
	if got := sync(2, o2, "other"); got != uint64(len(files[2])) {
		t.Fatalf("first model of line other: %d bytes, want the %d-byte file", got, len(files[2]))
	}
	got := sync(3, o3, "other")
	if got >= uint64(len(files[3]))/2 {
		t.Fatalf("second model of line other: %d bytes of a %d-byte file, want a delta", got, len(files[3]))
	}
	if sm := a.lines.get("other"); sm == nil || sm.version != 3 || sm.model.Hash() != o3.Hash() || sm.model.Spec.Name != "other" {
		t.Fatalf("line other serves %+v after the delta", sm)
	}
	// The default line still gets its deltas.
	if got := sync(4, d4, "small"); got >= uint64(len(files[4])) {
		t.Fatalf("default line: %d bytes of a %d-byte file, want a delta", got, len(files[4]))
	}
	if a.ModelVersion() != 4 {
		t.Fatalf("default line serves %d, want 4", a.ModelVersion())
	}
}
