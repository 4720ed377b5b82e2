package agent

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/fedge/fedge/tensor"
)

// TestDeltaBaseSkipsQuantized checks that the agent never offers a
// quantized version as the base of a delta download: it shares its
// parameters, so its hash, with the float version it came from, and a
// delta decoded onto it would carry its int8 directive into the next
// (float) version.
func TestDeltaBaseSkipsQuantized(t *testing.T) {
	st, err := openStore(filepath.Join(t.TempDir(), "state"), testLockWait)
	if err != nil {
		t.Fatal(err)
	}
	defer st.close()
	a := &Agent{st: st}
	m, blob := smallModel(t, 1)
	if err := st.promote(&modelRecord{version: 3, hash: m.Hash(), rolledOut: time.Now(), modelData: modelData{blob: blob}}); err != nil {
		t.Fatal(err)
	}
	if b := a.deltaBase("", 5); b == nil || b.Hash() != m.Hash() {
		t.Fatalf("a float served model is not offered as a delta base")
	}
	q := m.Clone()
	q.Spec.Quantize = tensor.QuantizeInt8
	qblob, err := q.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.promote(&modelRecord{version: 4, hash: q.Hash(), rolledOut: time.Now(), modelData: modelData{blob: qblob}}); err != nil {
		t.Fatal(err)
	}
	if b := a.deltaBase("", 5); b != nil {
		t.Fatalf("the quantized served model (spec quantize %q) is offered as a delta base", b.Spec.Quantize)
	}
}
