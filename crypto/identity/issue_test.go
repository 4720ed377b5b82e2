package identity_test

import (
	"crypto/ed25519"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/fedge/fedge/crypto/identity"
)

func TestIssueAgent(t *testing.T) {
	ca := newCA(t, "prod", t0)
	key := mustKey(t)
	csr, err := identity.NewCSR(key, "ag-one")
	if err != nil {
		t.Fatal(err)
	}
	der, err := ca.IssueAgent(csr, "ag-one", 0, t0)
	if err != nil {
		t.Fatal(err)
	}
	c := parse(t, der)
	id, err := identity.VerifyCertificate(c, ca.Pool(), t0)
	if err != nil || id != (identity.Identity{Role: identity.RoleAgent, ID: "ag-one"}) {
		t.Fatalf("VerifyCertificate = %v, %v", id, err)
	}
	if len(c.URIs) != 1 || c.URIs[0].String() != "fedge://agent/ag-one" {
		t.Errorf("URIs %v", c.URIs)
	}
	if !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) || c.IsCA {
		t.Errorf("EKU %v IsCA %v; want client auth only", c.ExtKeyUsage, c.IsCA)
	}
	if got := c.NotAfter.Sub(t0); got != identity.DefaultAgentTTL {
		t.Errorf("lifetime %v, want %v", got, identity.DefaultAgentTTL)
	}
	if !c.NotBefore.Before(t0) {
		t.Errorf("NotBefore %v not back-dated before %v", c.NotBefore, t0)
	}
	if !c.PublicKey.(ed25519.PublicKey).Equal(key.Public()) {
		t.Error("certificate is not for the request's key")
	}
	other, _ := ca.IssueAgent(csr, "ag-one", time.Hour, t0)
	if parse(t, other).SerialNumber.Cmp(c.SerialNumber) == 0 {
		t.Error("two certificates share a serial number")
	}
	if got := parse(t, other).NotAfter.Sub(t0); got != time.Hour {
		t.Errorf("explicit TTL gave %v", got)
	}
	// Never valid past the CA.
	long, err := ca.IssueAgent(csr, "ag-one", 20*identity.CAValidity, t0)
	if err != nil || !parse(t, long).NotAfter.Equal(ca.Certificate().NotAfter) {
		t.Errorf("long TTL not clamped to the CA: %v", err)
	}
}

func TestIssueAgentRejects(t *testing.T) {
	ca := newCA(t, "prod", t0)
	key := mustKey(t)
	csr, _ := identity.NewCSR(key, "ag-one")
	badSig := slices.Clone(csr)
	badSig[len(badSig)-1] ^= 1
	noURI, err := x509.CreateCertificateRequest(nil, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "ag-one"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	twoURIs, err := x509.CreateCertificateRequest(nil, &x509.CertificateRequest{URIs: []*url.URL{
		{Scheme: "fedge", Host: "agent", Path: "/ag-one"}, {Scheme: "fedge", Host: "admin", Path: "/root"},
	}}, key)
	if err != nil {
		t.Fatal(err)
	}
	adminURI, _ := x509.CreateCertificateRequest(nil, &x509.CertificateRequest{URIs: []*url.URL{
		{Scheme: "fedge", Host: "admin", Path: "/ag-one"},
	}}, key)
	tests := []struct {
		name string
		csr  []byte
		id   string
		ttl  time.Duration
		want error
	}{
		{"other agent ID", csr, "ag-two", 0, identity.ErrIdentityMismatch},
		{"bad signature", badSig, "ag-one", 0, identity.ErrMalformed},
		{"garbage", []byte("not a csr"), "ag-one", 0, identity.ErrMalformed},
		{"empty", nil, "ag-one", 0, identity.ErrMalformed},
		{"no URI", noURI, "ag-one", 0, identity.ErrIdentityMismatch},
		{"two URIs", twoURIs, "ag-one", 0, identity.ErrNoIdentity},
		{"admin URI", adminURI, "ag-one", 0, identity.ErrIdentityMismatch},
		{"bad ID", csr, "AG-ONE", 0, identity.ErrInvalidID},
		{"negative TTL", csr, "ag-one", -time.Hour, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			der, err := ca.IssueAgent(tt.csr, tt.id, tt.ttl, t0)
			if err == nil || der != nil {
				t.Fatalf("issued a certificate")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := identity.NewCSR(key, "Bad"); !errors.Is(err, identity.ErrInvalidID) {
		t.Errorf("NewCSR with bad ID: %v", err)
	}
	if _, err := identity.NewCSR(key[:10], "ag-one"); err == nil {
		t.Error("NewCSR with a truncated key succeeded")
	}
}

func TestIssueCoordinatorAndAdmin(t *testing.T) {
	ca := newCA(t, "prod", t0)
	pub := mustKey(t).Public().(ed25519.PublicKey)
	der, err := ca.IssueCoordinator(pub, "node-1", []string{"127.0.0.1", "::1", "localhost", "coord-1.example.net"}, 0, t0)
	if err != nil {
		t.Fatal(err)
	}
	c := parse(t, der)
	if !slices.Equal(c.DNSNames, []string{"localhost", "coord-1.example.net"}) || len(c.IPAddresses) != 2 {
		t.Errorf("SANs DNS %v IP %v", c.DNSNames, c.IPAddresses)
	}
	if !slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageServerAuth) || !slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		t.Errorf("coordinator EKU %v, want server and client", c.ExtKeyUsage)
	}
	if err := c.VerifyHostname("127.0.0.1"); err != nil {
		t.Error(err)
	}
	if c.NotAfter.Sub(t0) != identity.DefaultCoordinatorTTL {
		t.Errorf("coordinator lifetime %v", c.NotAfter.Sub(t0))
	}
	for _, h := range []string{"", "UPPER.example", "-a.example", "a-.example", "a..b", "a.", "a_b", "a b", string(make([]byte, 300))} {
		if _, err := ca.IssueCoordinator(pub, "node-1", []string{h}, 0, t0); !errors.Is(err, identity.ErrInvalidID) {
			t.Errorf("host %q: %v, want ErrInvalidID", h, err)
		}
	}
	if _, err := ca.IssueCoordinator(pub[:5], "node-1", nil, 0, t0); err == nil {
		t.Error("short public key accepted")
	}

	der, err = ca.IssueAdmin(pub, "alice", 0, t0)
	if err != nil {
		t.Fatal(err)
	}
	a := parse(t, der)
	id, err := identity.VerifyCertificate(a, ca.Pool(), t0)
	if err != nil || id.Role != identity.RoleAdmin || id.ID != "alice" {
		t.Fatalf("admin identity %v %v", id, err)
	}
	if slices.Contains(a.ExtKeyUsage, x509.ExtKeyUsageServerAuth) || a.NotAfter.Sub(t0) != identity.DefaultAdminTTL {
		t.Errorf("admin EKU %v lifetime %v", a.ExtKeyUsage, a.NotAfter.Sub(t0))
	}
}

func TestVerifyCertificate(t *testing.T) {
	ca := newCA(t, "prod", t0)
	other := newCA(t, "prod", t0)
	c := agentCert(t, ca, "ag-one", time.Hour, t0).Leaf
	tests := []struct {
		name  string
		roots *x509.CertPool
		at    time.Time
		ok    bool
	}{
		{"valid", ca.Pool(), t0.Add(time.Minute), true},
		{"expired", ca.Pool(), t0.Add(2 * time.Hour), false},
		{"not yet valid", ca.Pool(), t0.Add(-time.Hour), false},
		{"other CA", other.Pool(), t0, false},
	}
	for _, tt := range tests {
		_, err := identity.VerifyCertificate(c, tt.roots, tt.at)
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, identity.ErrCertInvalid)) {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
	// A certificate the CA signed without a fedge URI carries no identity.
	if _, err := identity.CertIdentity(ca.Certificate()); !errors.Is(err, identity.ErrNoIdentity) {
		t.Errorf("CA certificate identity: %v", err)
	}
}

func TestRenew(t *testing.T) {
	ca := newCA(t, "prod", t0)
	cur := agentCert(t, ca, "ag-one", 0, t0)
	curKey := cur.PrivateKey.(ed25519.PrivateKey)
	later := t0.Add(17 * time.Hour)
	sameKeyCSR, _ := identity.NewCSR(curKey, "ag-one")
	freshKey := mustKey(t)
	freshCSR, _ := identity.NewCSR(freshKey, "ag-one")
	otherCSR, _ := identity.NewCSR(freshKey, "ag-two")
	anonCSR, _ := x509.CreateCertificateRequest(nil, &x509.CertificateRequest{}, freshKey)

	revSerial := &identity.RevocationList{}
	if err := revSerial.RevokeSerial(cur.Leaf.SerialNumber, cur.Leaf.NotAfter); err != nil {
		t.Fatal(err)
	}
	revID := &identity.RevocationList{}
	if err := revID.RevokeIdentity(identity.Identity{Role: identity.RoleAgent, ID: "ag-one"}); err != nil {
		t.Fatal(err)
	}
	none := &identity.RevocationList{}
	otherCA := newCA(t, "prod", t0)
	foreign := agentCert(t, otherCA, "ag-one", 0, t0)

	tests := []struct {
		name string
		cur  *x509.Certificate
		csr  []byte
		rev  identity.Revoker
		at   time.Time
		want error
		key  ed25519.PrivateKey
	}{
		{"same key", cur.Leaf, sameKeyCSR, none, later, nil, curKey},
		{"fresh key", cur.Leaf, freshCSR, none, later, nil, freshKey},
		{"request without identity", cur.Leaf, anonCSR, none, later, nil, freshKey},
		{"request names another agent", cur.Leaf, otherCSR, none, later, identity.ErrIdentityMismatch, nil},
		{"serial revoked", cur.Leaf, freshCSR, revSerial, later, identity.ErrRevoked, nil},
		{"identity revoked", cur.Leaf, freshCSR, revID, later, identity.ErrRevoked, nil},
		{"expired", cur.Leaf, freshCSR, none, t0.Add(25 * time.Hour), identity.ErrCertInvalid, nil},
		{"other CA", foreign.Leaf, freshCSR, none, later, identity.ErrCertInvalid, nil},
		{"bad request", cur.Leaf, []byte{1, 2, 3}, none, later, identity.ErrMalformed, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			der, err := ca.Renew(tt.cur, tt.csr, tt.rev, 0, tt.at)
			if tt.want != nil {
				if !errors.Is(err, tt.want) {
					t.Fatalf("Renew error %v, want %v", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c := parse(t, der)
			id, err := identity.VerifyCertificate(c, ca.Pool(), tt.at)
			if err != nil || id.ID != "ag-one" || id.Role != identity.RoleAgent {
				t.Fatalf("renewed identity %v %v", id, err)
			}
			if c.NotAfter.Sub(tt.at) != identity.DefaultAgentTTL || c.SerialNumber.Cmp(tt.cur.SerialNumber) == 0 {
				t.Errorf("renewed lifetime %v, serial reused=%v", c.NotAfter.Sub(tt.at), c.SerialNumber.Cmp(tt.cur.SerialNumber) == 0)
			}
			if !c.PublicKey.(ed25519.PublicKey).Equal(tt.key.Public()) {
				t.Error("renewed certificate is not for the request's key")
			}
		})
	}
	if _, err := ca.Renew(cur.Leaf, freshCSR, nil, 0, later); err == nil {
		t.Error("Renew with a nil Revoker succeeded")
	}

	// A coordinator keeps its host names.
	coord := coordCert(t, ca, "node-1", t0)
	k := mustKey(t)
	anon, _ := x509.CreateCertificateRequest(nil, &x509.CertificateRequest{}, k)
	der, err := ca.Renew(coord.Leaf, anon, none, 0, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	c := parse(t, der)
	if c.VerifyHostname("localhost") != nil || c.VerifyHostname("127.0.0.1") != nil ||
		!slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageServerAuth) {
		t.Errorf("renewed coordinator lost hosts or server auth: %v %v %v", c.DNSNames, c.IPAddresses, c.ExtKeyUsage)
	}
}

func TestNeedsRenewal(t *testing.T) {
	ca := newCA(t, "prod", t0)
	c := agentCert(t, ca, "ag-one", 24*time.Hour, t0).Leaf
	life := c.NotAfter.Sub(c.NotBefore)
	tests := []struct {
		at   time.Time
		want bool
	}{
		{t0, false},
		{c.NotBefore.Add(life/3*2 - time.Second), false},
		{c.NotBefore.Add(life / 3 * 2), true},
		{t0.Add(23 * time.Hour), true},
		{t0.Add(48 * time.Hour), true},
	}
	for _, tt := range tests {
		if got := identity.NeedsRenewal(c, tt.at); got != tt.want {
			t.Errorf("NeedsRenewal at %v = %v, want %v", tt.at.Sub(t0), got, tt.want)
		}
	}
}

func TestTLSCertificate(t *testing.T) {
	ca := newCA(t, "prod", t0)
	key := mustKey(t)
	der, err := ca.IssueAdmin(key.Public().(ed25519.PublicKey), "alice", 0, t0)
	if err != nil {
		t.Fatal(err)
	}
	c, err := identity.TLSCertificate(key, der, ca.Certificate())
	if err != nil || len(c.Certificate) != 2 || c.Leaf == nil {
		t.Fatalf("TLSCertificate: %d certs, %v", len(c.Certificate), err)
	}
	if _, err := identity.TLSCertificate(mustKey(t), der, nil); !errors.Is(err, identity.ErrMalformed) {
		t.Errorf("key mismatch: %v", err)
	}
	if _, err := identity.TLSCertificate(key, []byte("x"), nil); !errors.Is(err, identity.ErrMalformed) {
		t.Errorf("bad DER: %v", err)
	}
}
