package identity

import (
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"net"
	"net/url"
	"time"
)

// NewKey returns a fresh Ed25519 private key read from rand: the key an
// agent (or an admin, or a coordinator) keeps and certifies.
func NewKey(rand io.Reader) (ed25519.PrivateKey, error) {
	_, key, err := ed25519.GenerateKey(rand)
	if err != nil {
		return nil, fmt.Errorf("identity.NewKey: %w", err)
	}
	return key, nil
}

// NewCSR returns a DER certificate signing request for key naming the
// agent agentID, the request an agent sends with its join token.
func NewCSR(key ed25519.PrivateKey, agentID string) ([]byte, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("identity.NewCSR: key of %d bytes, want Ed25519: %w", len(key), ErrMalformed)
	}
	id := Identity{Role: RoleAgent, ID: agentID}
	if err := id.Validate(); err != nil {
		return nil, fmt.Errorf("identity.NewCSR: %w", err)
	}
	tmpl := &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: agentID},
		URIs:    []*url.URL{id.URL()},
	}
	der, err := x509.CreateCertificateRequest(nil, tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("identity.NewCSR: %w", err)
	}
	return der, nil
}

// parseCSR parses and checks a request: size, signature, Ed25519 key. It
// returns the key and the identity the request names, if any.
func parseCSR(der []byte) (ed25519.PublicKey, Identity, bool, error) {
	if len(der) == 0 || len(der) > maxCertDER {
		return nil, Identity{}, false, fmt.Errorf("request of %d bytes: %w", len(der), ErrMalformed)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, Identity{}, false, fmt.Errorf("%v: %w", err, ErrMalformed)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, Identity{}, false, fmt.Errorf("request signature: %v: %w", err, ErrMalformed)
	}
	pub, ok := csr.PublicKey.(ed25519.PublicKey)
	if !ok {
		return nil, Identity{}, false, fmt.Errorf("request key is %T, want Ed25519: %w", csr.PublicKey, ErrMalformed)
	}
	id, named, err := identityFromURIs(csr.URIs)
	if err != nil {
		return nil, Identity{}, false, err
	}
	return pub, id, named, nil
}

// IssueAgent checks an agent's certificate request and returns the DER of
// its certificate: identity fedge://agent/<agentID>, client
// authentication only, valid for ttl (DefaultAgentTTL if zero, never past
// the CA's own expiry). The request must be signed by its Ed25519 key and
// name the same agent ID. The caller checks the join token first, and must
// refuse an agentID that is already enrolled: the CA does not know the
// fleet.
func (ca *CA) IssueAgent(csrDER []byte, agentID string, ttl time.Duration, now time.Time) ([]byte, error) {
	want := Identity{Role: RoleAgent, ID: agentID}
	if err := want.Validate(); err != nil {
		return nil, fmt.Errorf("identity.CA.IssueAgent: %w", err)
	}
	pub, got, named, err := parseCSR(csrDER)
	if err != nil {
		return nil, fmt.Errorf("identity.CA.IssueAgent: %w", err)
	}
	if !named || got != want {
		return nil, fmt.Errorf("identity.CA.IssueAgent: request names %v, want %v: %w", got, want, ErrIdentityMismatch)
	}
	der, err := ca.issueRole(pub, want, nil, ttl, now)
	if err != nil {
		return nil, fmt.Errorf("identity.CA.IssueAgent: %w", err)
	}
	return der, nil
}

// IssueCoordinator returns the DER certificate of coordinator nodeID for
// pub: server and client authentication (coordinators dial each other for
// Raft), with hosts as DNS and IP SANs so that agents can check the name
// they dialed (e.g. "127.0.0.1", "localhost", "coord-1.example.net").
// TTL zero means DefaultCoordinatorTTL.
func (ca *CA) IssueCoordinator(pub ed25519.PublicKey, nodeID string, hosts []string, ttl time.Duration, now time.Time) ([]byte, error) {
	der, err := ca.issueRole(pub, Identity{Role: RoleCoordinator, ID: nodeID}, hosts, ttl, now)
	if err != nil {
		return nil, fmt.Errorf("identity.CA.IssueCoordinator: %w", err)
	}
	return der, nil
}

// IssueAdmin returns the DER certificate of the operator name for pub,
// client authentication only. TTL zero means DefaultAdminTTL.
func (ca *CA) IssueAdmin(pub ed25519.PublicKey, name string, ttl time.Duration, now time.Time) ([]byte, error) {
	der, err := ca.issueRole(pub, Identity{Role: RoleAdmin, ID: name}, nil, ttl, now)
	if err != nil {
		return nil, fmt.Errorf("identity.CA.IssueAdmin: %w", err)
	}
	return der, nil
}

// issueRole fills the role-specific parts of a leaf template.
func (ca *CA) issueRole(pub ed25519.PublicKey, id Identity, hosts []string, ttl time.Duration, now time.Time) ([]byte, error) {
	tmpl := &x509.Certificate{}
	switch id.Role {
	case RoleAgent:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		if ttl == 0 {
			ttl = DefaultAgentTTL
		}
	case RoleAdmin:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		if ttl == 0 {
			ttl = DefaultAdminTTL
		}
	case RoleCoordinator:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		if ttl == 0 {
			ttl = DefaultCoordinatorTTL
		}
		for _, h := range hosts {
			if ip := net.ParseIP(h); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
				continue
			}
			if err := validateDNSName(h); err != nil {
				return nil, err
			}
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	default:
		return nil, fmt.Errorf("%v: %w", id.Role, ErrInvalidID)
	}
	if id.Role != RoleCoordinator && len(hosts) > 0 {
		return nil, fmt.Errorf("hosts given for role %v: %w", id.Role, ErrInvalidID)
	}
	return ca.issue(tmpl, pub, id, ttl, now)
}

// validateDNSName accepts lower-case host names: dot-separated labels of
// letters, digits and inner hyphens, 253 bytes at most.
func validateDNSName(h string) error {
	if len(h) == 0 || len(h) > 253 {
		return fmt.Errorf("host name %q: %w", h, ErrInvalidID)
	}
	label := 0
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			label++
		case c == '-' && label > 0 && i+1 < len(h) && h[i+1] != '.':
			label++
		case c == '.' && label > 0 && i+1 < len(h):
			label = 0
			continue
		default:
			return fmt.Errorf("host name %q: byte %d: %w", h, i, ErrInvalidID)
		}
		if label > 63 {
			return fmt.Errorf("host name %q: label longer than 63: %w", h, ErrInvalidID)
		}
	}
	return nil
}

// Renew issues a new certificate with the identity (and, for
// coordinators, the host names) of current, for the key of csrDER, which
// may be the same key or a fresh one. current must verify against this CA
// at now and be revoked neither by serial nor by identity in rev; the
// request, if it names an identity, must name the same one. TTL zero means
// the role's default. current is normally the peer certificate the TLS
// layer verified; Renew verifies it again.
func (ca *CA) Renew(current *x509.Certificate, csrDER []byte, rev Revoker, ttl time.Duration, now time.Time) ([]byte, error) {
	if rev == nil {
		return nil, fmt.Errorf("identity.CA.Renew: nil Revoker")
	}
	id, err := VerifyCertificate(current, ca.Pool(), now)
	if err != nil {
		return nil, fmt.Errorf("identity.CA.Renew: %w", err)
	}
	if rev.Revoked(current.SerialNumber, id) {
		return nil, fmt.Errorf("identity.CA.Renew: %v serial %x: %w", id, current.SerialNumber, ErrRevoked)
	}
	pub, got, named, err := parseCSR(csrDER)
	if err != nil {
		return nil, fmt.Errorf("identity.CA.Renew: %w", err)
	}
	if named && got != id {
		return nil, fmt.Errorf("identity.CA.Renew: request names %v, certificate %v: %w", got, id, ErrIdentityMismatch)
	}
	var hosts []string
	if id.Role == RoleCoordinator {
		hosts = append(hosts, current.DNSNames...)
		for _, ip := range current.IPAddresses {
			hosts = append(hosts, ip.String())
		}
	}
	der, err := ca.issueRole(pub, id, hosts, ttl, now)
	if err != nil {
		return nil, fmt.Errorf("identity.CA.Renew: %w", err)
	}
	return der, nil
}

// NeedsRenewal reports whether cert has used two thirds of its lifetime
// at now (or is already expired): the point at which its holder should
// ask for a new one.
func NeedsRenewal(cert *x509.Certificate, now time.Time) bool {
	life := cert.NotAfter.Sub(cert.NotBefore)
	return !now.Before(cert.NotBefore.Add(life / 3 * 2))
}

// VerifyCertificate checks that cert chains to a root in roots at now and
// carries a well-formed identity, which it returns. It does not consult
// revocation. Agents use it on the certificate they receive at enrollment
// or load from disk.
func VerifyCertificate(cert *x509.Certificate, roots *x509.CertPool, now time.Time) (Identity, error) {
	if cert == nil || roots == nil {
		return Identity{}, fmt.Errorf("identity.VerifyCertificate: nil certificate or roots: %w", ErrCertInvalid)
	}
	_, err := cert.Verify(x509.VerifyOptions{
		Roots:       roots,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return Identity{}, fmt.Errorf("identity.VerifyCertificate: %v: %w", err, ErrCertInvalid)
	}
	id, err := CertIdentity(cert)
	if err != nil {
		return Identity{}, fmt.Errorf("identity.VerifyCertificate: %w", err)
	}
	return id, nil
}

// TLSCertificate assembles a tls.Certificate from a private key and the
// DER certificate issued for it, followed by the CA certificate when ca is
// not nil. Coordinators must include the CA: a certificate-less enrolling
// agent finds it in the chain and checks it against its token's pin.
func TLSCertificate(key ed25519.PrivateKey, certDER []byte, ca *x509.Certificate) (tls.Certificate, error) {
	if len(certDER) > maxCertDER {
		return tls.Certificate{}, fmt.Errorf("identity.TLSCertificate: certificate of %d bytes: %w", len(certDER), ErrMalformed)
	}
	leaf, err := x509.ParseCertificate(certDER)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("identity.TLSCertificate: %v: %w", err, ErrMalformed)
	}
	pub, ok := leaf.PublicKey.(ed25519.PublicKey)
	if !ok || len(key) != ed25519.PrivateKeySize || !pub.Equal(key.Public()) {
		return tls.Certificate{}, fmt.Errorf("identity.TLSCertificate: certificate is not for this key: %w", ErrMalformed)
	}
	chain := [][]byte{certDER}
	if ca != nil {
		chain = append(chain, ca.Raw)
	}
	return tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}, nil
}
