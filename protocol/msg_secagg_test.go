package protocol

import (
	"bytes"
	"testing"
)

// TestStagePayload: every SecAgg+ stage message and relay yields its
// payload; other messages yield none.
func TestStagePayload(t *testing.T) {
	p := []byte("payload")
	for _, m := range []Message{
		&AdvertiseKeys{Payload: p}, &AdvertiseKeysRelay{Payload: p}, &ShareKeys{Payload: p}, &ShareKeysRelay{Payload: p},
		&MaskedInput{Payload: p}, &MaskedInputRelay{Payload: p}, &ConsistencyCheck{Payload: p}, &ConsistencyCheckRelay{Payload: p},
		&Unmask{Payload: p}, &UnmaskRelay{Payload: p},
	} {
		if got, ok := StagePayload(m); !ok || !bytes.Equal(got, p) {
			t.Errorf("%s: %q, %v", m.Type(), got, ok)
		}
	}
	if got, ok := StagePayload(&Ack{}); ok || got != nil {
		t.Errorf("Ack: %q, %v", got, ok)
	}
}
