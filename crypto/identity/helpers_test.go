package identity_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"testing"
	"time"

	"github.com/fedge/fedge/crypto/identity"
)

var update = flag.Bool("update", false, "rewrite golden files and fuzz seeds in testdata/")

// detRand is a deterministic byte stream for reproducible keys and IDs.
type detRand struct{ n byte }

func (r *detRand) Read(p []byte) (int, error) {
	for i := range p {
		r.n = r.n*89 + 13
		p[i] = r.n
	}
	return len(p), nil
}

func newCA(t testing.TB, name string, now time.Time) *identity.CA {
	t.Helper()
	ca, err := identity.NewCA(rand.Reader, name, now)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func mustKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	k, err := identity.NewKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustTLS(t testing.TB, key ed25519.PrivateKey, der []byte, err error, ca *identity.CA) tls.Certificate {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	c, err := identity.TLSCertificate(key, der, ca.Certificate())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// agentCert enrolls agent id with ca at now for ttl.
func agentCert(t testing.TB, ca *identity.CA, id string, ttl time.Duration, now time.Time) tls.Certificate {
	t.Helper()
	key := mustKey(t)
	csr, err := identity.NewCSR(key, id)
	if err != nil {
		t.Fatal(err)
	}
	der, err := ca.IssueAgent(csr, id, ttl, now)
	return mustTLS(t, key, der, err, ca)
}

func coordCert(t testing.TB, ca *identity.CA, id string, now time.Time) tls.Certificate {
	t.Helper()
	key := mustKey(t)
	der, err := ca.IssueCoordinator(key.Public().(ed25519.PublicKey), id, []string{"127.0.0.1", "localhost"}, 0, now)
	return mustTLS(t, key, der, err, ca)
}

func adminCert(t testing.TB, ca *identity.CA, name string, now time.Time) tls.Certificate {
	t.Helper()
	key := mustKey(t)
	der, err := ca.IssueAdmin(key.Public().(ed25519.PublicKey), name, 0, now)
	return mustTLS(t, key, der, err, ca)
}

func parse(t testing.TB, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
