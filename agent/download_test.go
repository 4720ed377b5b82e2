package agent

import (
	"bytes"
	"testing"

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
