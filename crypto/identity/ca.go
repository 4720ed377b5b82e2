package identity

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"time"
)

// Validity periods.
const (
	// CAValidity is the lifetime of a new cluster CA.
	CAValidity = 10 * 365 * 24 * time.Hour
	// DefaultAgentTTL is the lifetime of an agent certificate when the
	// caller passes a zero TTL. Agents renew after two thirds of it.
	DefaultAgentTTL = 24 * time.Hour
	// DefaultCoordinatorTTL is the default lifetime of a coordinator
	// certificate. Coordinators hold the CA and re-issue their own.
	DefaultCoordinatorTTL = 7 * 24 * time.Hour
	// DefaultAdminTTL is the default lifetime of an admin certificate.
	DefaultAdminTTL = 7 * 24 * time.Hour
	// clockSkew back-dates NotBefore so that a peer whose clock lags a
	// little still accepts a certificate issued a moment ago.
	clockSkew = 5 * time.Minute
)

// maxCertDER bounds the certificates and requests this package parses.
const maxCertDER = 8 << 10

// CA is a cluster's certificate authority: an Ed25519 key and its
// self-signed X.509 root. Every coordinator holds the same CA, replicated
// through Raft in sealed form (Seal, OpenCA), and can issue certificates.
// A CA is immutable and safe for concurrent use.
type CA struct {
	cert    *x509.Certificate
	key     ed25519.PrivateKey
	cluster string
}

// NewCA creates the CA of the cluster named clusterName (ValidateID
// syntax), valid from now for CAValidity. The key is read from rand.
func NewCA(rand io.Reader, clusterName string, now time.Time) (*CA, error) {
	if err := ValidateID(clusterName); err != nil {
		return nil, fmt.Errorf("identity.NewCA: cluster name: %w", err)
	}
	pub, key, err := ed25519.GenerateKey(rand)
	if err != nil {
		return nil, fmt.Errorf("identity.NewCA: %w", err)
	}
	serial, err := newSerial(rand)
	if err != nil {
		return nil, fmt.Errorf("identity.NewCA: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               caSubject(clusterName),
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand, tmpl, tmpl, pub, key)
	if err != nil {
		return nil, fmt.Errorf("identity.NewCA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("identity.NewCA: %w", err)
	}
	return &CA{cert: cert, key: key, cluster: clusterName}, nil
}

func caSubject(cluster string) pkix.Name {
	return pkix.Name{CommonName: "fedge cluster CA", Organization: []string{cluster}}
}

// newCA checks that cert is a CA root of cluster whose public key is the
// one of key, and returns the CA.
func newCA(cert *x509.Certificate, key ed25519.PrivateKey, cluster string) (*CA, error) {
	if err := ValidateID(cluster); err != nil {
		return nil, err
	}
	pub, ok := cert.PublicKey.(ed25519.PublicKey)
	if !ok || !pub.Equal(key.Public()) {
		return nil, fmt.Errorf("CA certificate does not match the key: %w", ErrMalformed)
	}
	if !cert.IsCA || !cert.BasicConstraintsValid || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("certificate is not a CA: %w", ErrMalformed)
	}
	if len(cert.Subject.Organization) != 1 || cert.Subject.Organization[0] != cluster {
		return nil, fmt.Errorf("CA certificate is not the one of cluster %q: %w", cluster, ErrMalformed)
	}
	if err := cert.CheckSignatureFrom(cert); err != nil {
		return nil, fmt.Errorf("CA certificate not self-signed: %v: %w", err, ErrMalformed)
	}
	return &CA{cert: cert, key: key, cluster: cluster}, nil
}

// Certificate returns the CA's root certificate. Callers must not modify it.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// ClusterName returns the name the CA was created with.
func (ca *CA) ClusterName() string { return ca.cluster }

// Pool returns a new certificate pool holding only the CA's root, for
// tls.Config RootCAs / ClientCAs and for VerifyCertificate.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// Pin returns the CA's pin: the SHA-256 of its SubjectPublicKeyInfo, as
// carried by join tokens.
func (ca *CA) Pin() [32]byte { return Pin(ca.cert) }

// Pin returns the SHA-256 of cert's DER SubjectPublicKeyInfo, the value
// kubeadm calls the discovery token CA cert hash.
func Pin(cert *x509.Certificate) [32]byte { return sha256.Sum256(cert.RawSubjectPublicKeyInfo) }

// VerifyCAPin parses a CA certificate received from a not yet trusted
// coordinator and checks it against the pin of a join token. On success the
// agent can trust it as its root.
func VerifyCAPin(caDER []byte, pin [32]byte) (*x509.Certificate, error) {
	if len(caDER) > maxCertDER {
		return nil, fmt.Errorf("identity.VerifyCAPin: certificate of %d bytes: %w", len(caDER), ErrMalformed)
	}
	cert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("identity.VerifyCAPin: %v: %w", err, ErrMalformed)
	}
	if Pin(cert) != pin {
		return nil, fmt.Errorf("identity.VerifyCAPin: %w", ErrCAPin)
	}
	if !cert.IsCA || !cert.BasicConstraintsValid {
		return nil, fmt.Errorf("identity.VerifyCAPin: pinned certificate is not a CA: %w", ErrCAPin)
	}
	if err := cert.CheckSignatureFrom(cert); err != nil {
		return nil, fmt.Errorf("identity.VerifyCAPin: %v: %w", err, ErrCAPin)
	}
	return cert, nil
}

// newSerial returns a random positive 127-bit certificate serial number.
func newSerial(r io.Reader) (*big.Int, error) {
	var b [16]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return nil, fmt.Errorf("serial: %w", err)
	}
	b[0] &= 0x7f
	b[0] |= 0x40 // never zero, always 16 bytes
	return new(big.Int).SetBytes(b[:]), nil
}

// issue signs a leaf certificate for id with the CA key.
func (ca *CA) issue(tmpl *x509.Certificate, pub ed25519.PublicKey, id Identity, ttl time.Duration, now time.Time) ([]byte, error) {
	if err := id.Validate(); err != nil {
		return nil, err
	}
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("public key of %d bytes, want Ed25519: %w", len(pub), ErrMalformed)
	}
	if ttl < 0 {
		return nil, fmt.Errorf("negative TTL %v", ttl)
	}
	serial, err := newSerial(rand.Reader)
	if err != nil {
		return nil, err
	}
	notAfter := now.Add(ttl)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	if !notAfter.After(now) {
		return nil, fmt.Errorf("CA expires at %v: %w", ca.cert.NotAfter, ErrCertInvalid)
	}
	tmpl.SerialNumber = serial
	tmpl.Subject = pkix.Name{CommonName: id.ID, OrganizationalUnit: []string{id.Role.String()}, Organization: []string{ca.cluster}}
	tmpl.NotBefore = now.Add(-clockSkew)
	tmpl.NotAfter = notAfter
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.BasicConstraintsValid = true
	tmpl.IsCA = false
	tmpl.URIs = append(tmpl.URIs[:0], id.URL())
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		return nil, err
	}
	return der, nil
}
