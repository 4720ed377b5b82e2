package identity_test

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/fedge/fedge/crypto/identity"
)

// cheapKDF keeps argon2id fast in tests; the parameters travel in the blob.
var cheapKDF = identity.KDFParams{Time: 1, MemoryKiB: 64, Threads: 1}

func TestSealPassphraseRoundTrip(t *testing.T) {
	ca := newCA(t, "prod-eu", t0)
	sealed, err := ca.SealPassphrase([]byte("correct horse battery staple"), cheapKDF)
	if err != nil {
		t.Fatal(err)
	}
	if !identity.SealedWithPassphrase(sealed) {
		t.Fatal("SealedWithPassphrase = false for a passphrase-sealed CA")
	}
	key, err := identity.SealKeyFromPassphrase(sealed, []byte("correct horse battery staple"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := identity.OpenCA(sealed, key)
	if err != nil {
		t.Fatal(err)
	}
	if got.Pin() != ca.Pin() || got.ClusterName() != "prod-eu" {
		t.Fatal("opened CA differs")
	}
	// A wrong passphrase derives a key that does not open it.
	wrong, err := identity.SealKeyFromPassphrase(sealed, []byte("correct horse battery stapler"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := identity.OpenCA(sealed, wrong); !errors.Is(err, identity.ErrSealKey) {
		t.Fatalf("wrong passphrase: %v, want ErrSealKey", err)
	}
	// The KDF parameters are authenticated: weakening them breaks the open
	// even with the right passphrase.
	tampered := bytes.Clone(sealed)
	binary.BigEndian.PutUint32(tampered[9:], 2) // time
	k2, err := identity.SealKeyFromPassphrase(tampered, []byte("correct horse battery staple"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := identity.OpenCA(tampered, k2); !errors.Is(err, identity.ErrSealKey) {
		t.Fatalf("tampered KDF parameters: %v, want ErrSealKey", err)
	}
}

func TestSealKeyFromPassphraseRefuses(t *testing.T) {
	ca := newCA(t, "prod", t0)
	raw, _ := identity.NewSealKey(rand.Reader)
	v1, err := ca.Seal(raw)
	if err != nil {
		t.Fatal(err)
	}
	if identity.SealedWithPassphrase(v1) {
		t.Error("SealedWithPassphrase = true for a raw-key seal")
	}
	if _, err := identity.SealKeyFromPassphrase(v1, []byte("pw")); !errors.Is(err, identity.ErrSealKey) {
		t.Errorf("raw-key seal: %v, want ErrSealKey", err)
	}
	v2, err := ca.SealPassphrase([]byte("pw"), cheapKDF)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := identity.SealKeyFromPassphrase(v2, nil); !errors.Is(err, identity.ErrSealKey) {
		t.Errorf("empty passphrase: %v, want ErrSealKey", err)
	}
	huge := bytes.Clone(v2)
	binary.BigEndian.PutUint32(huge[13:], identity.MaxKDFMemoryKiB+1) // memory
	if _, err := identity.SealKeyFromPassphrase(huge, []byte("pw")); !errors.Is(err, identity.ErrMalformed) {
		t.Errorf("memory above the bound: %v, want ErrMalformed", err)
	}
	if _, err := identity.OpenCA(huge, raw); !errors.Is(err, identity.ErrMalformed) {
		t.Errorf("OpenCA with memory above the bound: %v, want ErrMalformed", err)
	}
	if _, err := ca.SealPassphrase(nil, cheapKDF); !errors.Is(err, identity.ErrSealKey) {
		t.Errorf("sealing with an empty passphrase: %v", err)
	}
}

func TestParseSealKey(t *testing.T) {
	k, _ := identity.NewSealKey(rand.Reader)
	got, err := identity.ParseSealKey("  " + hex.EncodeToString(k) + "\n")
	if err != nil || !bytes.Equal(got, k) {
		t.Fatalf("ParseSealKey = %x, %v", got, err)
	}
	for _, bad := range []string{"", "zz", hex.EncodeToString(k[:31]), hex.EncodeToString(k) + "00"} {
		if _, err := identity.ParseSealKey(bad); !errors.Is(err, identity.ErrSealKey) {
			t.Errorf("ParseSealKey(%q) = %v, want ErrSealKey", bad, err)
		}
	}
}
