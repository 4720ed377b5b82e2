package secagg

import (
	"bytes"
	"crypto/ed25519"
	"math/rand/v2"
	"testing"
)

// TestRoundClientsShareTheCompiledConfig: clients of one compiled Round
// share its participant list and graph instead of each compiling them,
// and behave as NewClient's: the same randomness gives the same messages.
func TestRoundClientsShareTheCompiledConfig(t *testing.T) {
	const n = 40
	cfg := &Config{RoundID: []byte("shared"), Dim: 8}
	signers := map[uint32]ed25519.PrivateKey{}
	for i := range n {
		key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{byte(i + 1)}, ed25519.SeedSize))
		signers[uint32(i+1)] = key
		cfg.Participants = append(cfg.Participants, Participant{ID: uint32(i + 1), SigningKey: key.Public().(ed25519.PublicKey)})
	}
	r, err := cfg.Compile()
	if err != nil {
		t.Fatal(err)
	}
	var first *Client
	for id := uint32(1); id <= n; id++ {
		seed := [32]byte{byte(id)}
		shared, err := NewRoundClient(r, id, signers[id], rand.NewChaCha8(seed))
		if err != nil {
			t.Fatal(err)
		}
		own, err := NewClient(cfg, id, signers[id], rand.NewChaCha8(seed))
		if err != nil {
			t.Fatal(err)
		}
		if first == nil {
			first = shared
		} else if shared.p != first.p {
			t.Fatalf("client %d compiled its own config", id)
		}
		a, err := shared.AdvertiseKeys()
		if err != nil {
			t.Fatal(err)
		}
		b, err := own.AdvertiseKeys()
		if err != nil {
			t.Fatal(err)
		}
		ab, _ := a.MarshalBinary()
		bb, _ := b.MarshalBinary()
		if !bytes.Equal(ab, bb) {
			t.Fatalf("client %d: advertised keys differ from NewClient's", id)
		}
	}
	if _, err := NewRoundClient(r, n+1, signers[1], nil); err == nil {
		t.Fatal("a client outside the round was made")
	}
	if _, err := (&Config{}).Compile(); err == nil {
		t.Fatal("an empty config compiled")
	}
}
