package identity

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"errors"
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

// TestOpenCAInconsistent seals CAs whose parts do not belong together, as
// only a holder of the seal key could: OpenCA must still refuse them.
func TestOpenCAInconsistent(t *testing.T) {
	now := time.Now()
	a, _ := NewCA(rand.Reader, "prod", now)
	b, _ := NewCA(rand.Reader, "prod", now)
	leafKey, _ := NewKey(rand.Reader)
	leafDER, err := a.IssueAdmin(leafKey.Public().(ed25519.PublicKey), "alice", 0, now)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(leafDER)
	key, _ := NewSealKey(rand.Reader)
	tests := map[string]*CA{
		"key of another CA": {cert: a.cert, key: b.key, cluster: "prod"},
		"other cluster":     {cert: a.cert, key: a.key, cluster: "test"},
		"leaf as CA":        {cert: leaf, key: leafKey, cluster: "prod"},
	}
	for name, ca := range tests {
		sealed, err := ca.Seal(key)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := OpenCA(sealed, key); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: OpenCA = %v, want ErrMalformed", name, err)
		}
	}
}
