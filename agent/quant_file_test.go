package agent

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/tensor"
)

// TestInt8ModelStoredAtInt8Size: a version served in int8 whose file
// holds int8 weights is downloaded and kept at that size (about a quarter
// of the float file), and served quantized from it.
func TestInt8ModelStoredAtInt8Size(t *testing.T) {
	spec, err := tensor.NamedSpec(tensor.Spec2NN)
	if err != nil {
		t.Fatal(err)
	}
	m, err := tensor.NewModel(spec, 3)
	if err != nil {
		t.Fatal(err)
	}
	floatFile := modelBlob(t, m)
	m.Spec.Quantize = tensor.QuantizeInt8
	m.RoundWeightsInt8()
	file := modelBlob(t, m)
	a := roundAgent(t, synthData(40, 784, 10, 1), 0.5)
	tw := &twin{agent: a.ID(), hub: newHub(map[uint64][]byte{1: file})}
	if err := a.syncModel(context.Background(), tw, &protocol.ModelAnnounce{Version: 1, Hash: m.Hash()}); err != nil {
		t.Fatal(err)
	}
	rec, err := a.st.model(keyCurrent)
	if err != nil || rec == nil {
		t.Fatal(rec, err)
	}
	st, err := os.Stat(filepath.Join(a.st.files.dir, rec.file))
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != int64(len(file)) || float64(st.Size()) > 0.27*float64(len(floatFile)) {
		t.Fatalf("stored model file of %d bytes; the int8 file is %d, the float one %d", st.Size(), len(file), len(floatFile))
	}
	if got := a.served.Load(); got == nil || got.quantized() != tensor.QuantizeInt8 || got.model.Hash() != m.Hash() {
		t.Fatalf("served %+v, want version 1 in int8", got)
	}
}
