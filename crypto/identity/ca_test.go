package identity_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/fedge/fedge/crypto/identity"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestNewCA(t *testing.T) {
	ca := newCA(t, "prod-eu", t0)
	c := ca.Certificate()
	if !c.IsCA || !c.BasicConstraintsValid || c.MaxPathLen != 0 || !c.MaxPathLenZero {
		t.Errorf("CA constraints: IsCA=%v BC=%v MaxPathLen=%d zero=%v", c.IsCA, c.BasicConstraintsValid, c.MaxPathLen, c.MaxPathLenZero)
	}
	if _, ok := c.PublicKey.(ed25519.PublicKey); !ok || c.SignatureAlgorithm != x509.PureEd25519 {
		t.Errorf("CA key %T, signature %v; want Ed25519", c.PublicKey, c.SignatureAlgorithm)
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		t.Errorf("not self-signed: %v", err)
	}
	if got := c.NotAfter.Sub(t0); got != identity.CAValidity {
		t.Errorf("CA lifetime from now %v, want %v", got, identity.CAValidity)
	}
	if ca.ClusterName() != "prod-eu" || c.Subject.Organization[0] != "prod-eu" {
		t.Errorf("cluster name %q / %v", ca.ClusterName(), c.Subject.Organization)
	}
	if ca.Pin() != identity.Pin(c) || ca.Pin() == identity.Pin(newCA(t, "prod-eu", t0).Certificate()) {
		t.Error("pins of two CAs must differ and match their certificates")
	}
	if _, err := identity.NewCA(rand.Reader, "Bad Name", t0); !errors.Is(err, identity.ErrInvalidID) {
		t.Errorf("NewCA with bad name: %v", err)
	}
	// Keys come from the given reader.
	a, _ := identity.NewCA(&detRand{}, "c", t0)
	b, _ := identity.NewCA(&detRand{}, "c", t0)
	if a.Pin() != b.Pin() {
		t.Error("NewCA did not draw its key from rand")
	}
}

func TestSealRoundTrip(t *testing.T) {
	ca := newCA(t, "prod", t0)
	key, err := identity.NewSealKey(rand.Reader)
	if err != nil || len(key) != identity.SealKeySize {
		t.Fatalf("NewSealKey: %d bytes, %v", len(key), err)
	}
	sealed, err := ca.Seal(key)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := ca.Seal(key)
	if bytes.Equal(sealed, again) {
		t.Error("two seals are identical: salt and nonce must be fresh")
	}
	got, err := identity.OpenCA(sealed, key)
	if err != nil {
		t.Fatal(err)
	}
	if got.Pin() != ca.Pin() || got.ClusterName() != "prod" || !got.Certificate().Equal(ca.Certificate()) {
		t.Fatal("opened CA differs from the sealed one")
	}
	// The opened CA signs certificates that the original's pool accepts.
	pub := mustKey(t).Public().(ed25519.PublicKey)
	der, err := got.IssueAdmin(pub, "alice", 0, t0)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := identity.VerifyCertificate(parse(t, der), ca.Pool(), t0); err != nil || id.ID != "alice" {
		t.Fatalf("certificate from the opened CA: %v %v", id, err)
	}
}

func TestOpenCAErrors(t *testing.T) {
	ca := newCA(t, "prod", t0)
	key, _ := identity.NewSealKey(rand.Reader)
	other, _ := identity.NewSealKey(rand.Reader)
	sealed, err := ca.Seal(key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := identity.OpenCA(sealed, other); !errors.Is(err, identity.ErrSealKey) {
		t.Errorf("wrong key: %v, want ErrSealKey", err)
	}
	if _, err := identity.OpenCA(sealed, key[:31]); !errors.Is(err, identity.ErrSealKey) {
		t.Errorf("short key: %v, want ErrSealKey", err)
	}
	if _, err := ca.Seal(key[:16]); !errors.Is(err, identity.ErrSealKey) {
		t.Errorf("Seal with short key: %v", err)
	}
	// Flipping any byte fails: the header is authenticated, the box too.
	for i := range sealed {
		bad := bytes.Clone(sealed)
		bad[i] ^= 0x01
		_, err := identity.OpenCA(bad, key)
		if !errors.Is(err, identity.ErrSealKey) && !errors.Is(err, identity.ErrMalformed) {
			t.Fatalf("byte %d flipped: %v", i, err)
		}
	}
	// Every truncation and an extension fail as malformed.
	for n := 0; n < len(sealed); n++ {
		if _, err := identity.OpenCA(sealed[:n], key); !errors.Is(err, identity.ErrMalformed) {
			t.Fatalf("truncated to %d: %v", n, err)
		}
	}
	if _, err := identity.OpenCA(append(bytes.Clone(sealed), 0), key); !errors.Is(err, identity.ErrMalformed) {
		t.Errorf("extended: %v", err)
	}
	// A sealed CA relabelled with another cluster name does not open.
	relabel := bytes.Clone(sealed)
	copy(relabel[9:13], "test")
	if _, err := identity.OpenCA(relabel, key); !errors.Is(err, identity.ErrSealKey) {
		t.Errorf("relabelled cluster: %v, want ErrSealKey", err)
	}
}

func TestVerifyCAPin(t *testing.T) {
	ca := newCA(t, "prod", t0)
	other := newCA(t, "prod", t0)
	got, err := identity.VerifyCAPin(ca.Certificate().Raw, ca.Pin())
	if err != nil || !got.Equal(ca.Certificate()) {
		t.Fatalf("VerifyCAPin(own) = %v", err)
	}
	if _, err := identity.VerifyCAPin(other.Certificate().Raw, ca.Pin()); !errors.Is(err, identity.ErrCAPin) {
		t.Errorf("other CA: %v, want ErrCAPin", err)
	}
	leaf := agentCert(t, ca, "ag-1", 0, t0)
	if _, err := identity.VerifyCAPin(leaf.Certificate[0], identity.Pin(leaf.Leaf)); !errors.Is(err, identity.ErrCAPin) {
		t.Errorf("leaf pinned as CA: %v, want ErrCAPin", err)
	}
	if _, err := identity.VerifyCAPin([]byte("junk"), ca.Pin()); !errors.Is(err, identity.ErrMalformed) {
		t.Errorf("junk: %v, want ErrMalformed", err)
	}
}
