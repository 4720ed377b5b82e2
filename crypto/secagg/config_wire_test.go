package secagg

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"reflect"
	"testing"
)

func testConfig(t testing.TB, n int, q *Quantizer) *Config {
	t.Helper()
	c := &Config{RoundID: []byte("cluster/round/7"), Dim: 10, Neighbours: 4, Quantizer: q}
	for i := 0; i < n; i++ {
		pub, _, err := ed25519.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		c.Participants = append(c.Participants, Participant{ID: uint32(i + 1), SigningKey: pub})
	}
	c.GraphSeed[3] = 9
	return c
}

func TestConfigWireRoundTrip(t *testing.T) {
	for _, q := range []*Quantizer{nil, {Clip: 0.5, Bits: 16, MaxWeight: 1024}} {
		c := testConfig(t, 5, q)
		b, err := c.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var got Config
		if err := got.UnmarshalBinary(b); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(&got, c) {
			t.Fatalf("round trip differs:\n%+v\n%+v", got, *c)
		}
		if err := got.Validate(); err != nil {
			t.Fatalf("decoded config invalid: %v", err)
		}
		// Every truncation is refused.
		for i := 0; i < len(b); i++ {
			if err := new(Config).UnmarshalBinary(b[:i]); !errors.Is(err, ErrMalformed) {
				t.Fatalf("truncated at %d: %v", i, err)
			}
		}
		if err := new(Config).UnmarshalBinary(append(b, 0)); !errors.Is(err, ErrMalformed) {
			t.Fatalf("trailing byte: %v", err)
		}
	}
}

func FuzzConfigUnmarshal(f *testing.F) {
	c := testConfig(f, 3, &Quantizer{Clip: 1, Bits: 16})
	b, _ := c.MarshalBinary()
	f.Add(b)
	f.Add([]byte(configMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		var c Config
		if err := c.UnmarshalBinary(data); err != nil {
			return
		}
		again, err := c.MarshalBinary()
		if err != nil {
			return // e.g. a zero-length key list entry cannot be re-encoded
		}
		if !bytes.Equal(again, data) {
			t.Fatalf("decode/encode not canonical")
		}
	})
}
