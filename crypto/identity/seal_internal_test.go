package identity

import (
	"bytes"
	"crypto/rand"
	"testing"
	"time"
)

func TestSealHidesKey(t *testing.T) {
	ca, err := NewCA(rand.Reader, "prod", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	key, _ := NewSealKey(rand.Reader)
	sealed, err := ca.Seal(key)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, ca.key.Seed()[:8]) || bytes.Contains(sealed, ca.key.Seed()[24:]) {
		t.Error("sealed bytes contain part of the private key seed")
	}
	got, err := OpenCA(sealed, key)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.key, ca.key) {
		t.Error("opened key differs")
	}
}
