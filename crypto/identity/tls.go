package identity

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Default ALPN protocol names of a coordinator's listener, one per kind of
// peer. The protocol package may use these or pass its own names in
// ServerOptions.Protocols.
const (
	// ALPNAgent carries agent sessions; only agent certificates.
	ALPNAgent = "fedge-agent/1"
	// ALPNRaft carries Raft between coordinators; only coordinator
	// certificates.
	ALPNRaft = "fedge-raft/1"
	// ALPNAdmin carries the admin API; only admin certificates.
	ALPNAdmin = "fedge-admin/1"
	// ALPNEnroll carries enrollment: the client has no certificate yet and
	// proves itself in band with a join token.
	ALPNEnroll = "fedge-enroll/1"
	// ALPNPeer carries requests between coordinators (forwarded writes);
	// only coordinator certificates.
	ALPNPeer = "fedge-peer/1"
)

// Protocol is the access rule of one ALPN protocol on a coordinator's
// listener.
type Protocol struct {
	// Name is the ALPN protocol ID.
	Name string
	// Roles are the roles whose client certificates are accepted. Must be
	// empty when Enroll is set, and not empty otherwise.
	Roles []Role
	// Enroll marks the certificate-less protocol: the server asks for no
	// client certificate, and the application must authenticate the
	// client in band (with a join token). PeerIdentity fails on it.
	Enroll bool
}

// DefaultProtocols returns the access rules of the default ALPN names:
// agents on ALPNAgent, coordinators on ALPNRaft and ALPNPeer, admins on
// ALPNAdmin and certificate-less clients on ALPNEnroll.
func DefaultProtocols() []Protocol {
	return []Protocol{
		{Name: ALPNAgent, Roles: []Role{RoleAgent}},
		{Name: ALPNRaft, Roles: []Role{RoleCoordinator}},
		{Name: ALPNPeer, Roles: []Role{RoleCoordinator}},
		{Name: ALPNAdmin, Roles: []Role{RoleAdmin}},
		{Name: ALPNEnroll, Enroll: true},
	}
}

// ServerOptions configures ServerConfig.
type ServerOptions struct {
	// Certificate is the coordinator's chain (leaf then CA, see
	// TLSCertificate) and key. Exactly one of Certificate and
	// GetCertificate must be set; GetCertificate lets a running coordinator
	// swap in a renewed certificate.
	Certificate    *tls.Certificate
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// ClientCAs verifies client certificates: the cluster CA's Pool.
	ClientCAs *x509.CertPool
	// Revoker is consulted on every handshake, resumed ones included.
	// Required; pass an empty RevocationList to revoke nothing.
	Revoker Revoker
	// Protocols are the ALPN names served and who may use each. If nil,
	// DefaultProtocols.
	Protocols []Protocol
	// Time returns the current time for certificate validity. If nil,
	// time.Now.
	Time func() time.Time
}

// ServerConfig returns a coordinator listener's TLS 1.3 configuration.
// It picks the first ALPN name the client offers that Protocols knows, in
// the client's order, and then requires a client certificate verified by
// ClientCAs whose role the protocol allows and which Revoker does not
// revoke — except on an Enroll protocol, where no client certificate is
// asked for. Clients offering no known ALPN name are refused.
func ServerConfig(opts ServerOptions) (*tls.Config, error) {
	if (opts.Certificate == nil) == (opts.GetCertificate == nil) {
		return nil, errors.New("identity.ServerConfig: exactly one of Certificate and GetCertificate must be set")
	}
	if opts.ClientCAs == nil || opts.Revoker == nil {
		return nil, errors.New("identity.ServerConfig: ClientCAs and Revoker are required")
	}
	var certs []tls.Certificate
	if opts.Certificate != nil {
		if err := checkOwnCert(*opts.Certificate, RoleCoordinator); err != nil {
			return nil, fmt.Errorf("identity.ServerConfig: %w", err)
		}
		certs = []tls.Certificate{*opts.Certificate}
	}
	protos := opts.Protocols
	if protos == nil {
		protos = DefaultProtocols()
	}
	if len(protos) == 0 {
		return nil, errors.New("identity.ServerConfig: no protocols")
	}
	byName := make(map[string]*tls.Config, len(protos))
	names := make([]string, 0, len(protos))
	for _, p := range protos {
		if err := p.validate(); err != nil {
			return nil, fmt.Errorf("identity.ServerConfig: %w", err)
		}
		if byName[p.Name] != nil {
			return nil, fmt.Errorf("identity.ServerConfig: protocol %q listed twice", p.Name)
		}
		c := &tls.Config{
			MinVersion:     tls.VersionTLS13,
			NextProtos:     []string{p.Name},
			Certificates:   certs,
			GetCertificate: opts.GetCertificate,
			Time:           opts.Time,
		}
		if p.Enroll {
			c.ClientAuth = tls.NoClientCert
			c.SessionTicketsDisabled = true
		} else {
			c.ClientAuth = tls.RequireAndVerifyClientCert
			c.ClientCAs = opts.ClientCAs
			c.VerifyConnection = verifyClient(p.Name, slices.Clone(p.Roles), opts.Revoker)
		}
		byName[p.Name] = c
		names = append(names, p.Name)
	}
	base := &tls.Config{
		MinVersion:     tls.VersionTLS13,
		NextProtos:     names,
		Certificates:   certs,
		GetCertificate: opts.GetCertificate,
		Time:           opts.Time,
		// Fail closed should a handshake ever run on the base config.
		ClientAuth: tls.RequireAndVerifyClientCert,
		ClientCAs:  opts.ClientCAs,
		VerifyConnection: func(tls.ConnectionState) error {
			return fmt.Errorf("identity: no protocol selected: %w", ErrRoleNotAllowed)
		},
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			for _, name := range hello.SupportedProtos {
				if c := byName[name]; c != nil {
					return c, nil
				}
			}
			return nil, fmt.Errorf("identity: client offers no known ALPN protocol (%q): %w", hello.SupportedProtos, ErrRoleNotAllowed)
		},
	}
	return base, nil
}

func (p Protocol) validate() error {
	if len(p.Name) == 0 || len(p.Name) > 255 {
		return fmt.Errorf("protocol name %q: %w", p.Name, ErrInvalidID)
	}
	if p.Enroll != (len(p.Roles) == 0) {
		return fmt.Errorf("protocol %q: an Enroll protocol has no roles, any other at least one", p.Name)
	}
	for _, r := range p.Roles {
		if !r.Valid() {
			return fmt.Errorf("protocol %q: %v: %w", p.Name, r, ErrInvalidID)
		}
	}
	return nil
}

// verifyClient is the VerifyConnection of a protocol with certificates. It
// runs after crypto/tls verified the chain, and on resumed sessions too.
func verifyClient(proto string, roles []Role, rev Revoker) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if cs.NegotiatedProtocol != proto {
			return fmt.Errorf("identity: negotiated %q on the %q configuration: %w", cs.NegotiatedProtocol, proto, ErrRoleNotAllowed)
		}
		return checkPeer(cs, roles, rev)
	}
}

// checkPeer checks the verified peer's role and revocation.
func checkPeer(cs tls.ConnectionState, roles []Role, rev Revoker) error {
	id, err := PeerIdentity(cs)
	if err != nil {
		return err
	}
	if !slices.Contains(roles, id.Role) {
		return fmt.Errorf("identity: %v may not use %q: %w", id, cs.NegotiatedProtocol, ErrRoleNotAllowed)
	}
	if rev != nil && rev.Revoked(cs.VerifiedChains[0][0].SerialNumber, id) {
		return fmt.Errorf("identity: %v serial %x: %w", id, cs.VerifiedChains[0][0].SerialNumber, ErrRevoked)
	}
	return nil
}

// PeerIdentity returns the identity of the peer of a TLS connection whose
// certificate chain crypto/tls verified. It fails with ErrNoIdentity on a
// connection without a verified peer certificate, such as enrollment.
func PeerIdentity(cs tls.ConnectionState) (Identity, error) {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return Identity{}, fmt.Errorf("identity.PeerIdentity: %w", ErrNoIdentity)
	}
	id, err := CertIdentity(cs.VerifiedChains[0][0])
	if err != nil {
		return Identity{}, fmt.Errorf("identity.PeerIdentity: %w", err)
	}
	return id, nil
}

// checkOwnCert checks that a configured certificate carries role.
func checkOwnCert(cert tls.Certificate, role Role) error {
	leaf := cert.Leaf
	if leaf == nil {
		if len(cert.Certificate) == 0 {
			return fmt.Errorf("empty certificate: %w", ErrNoIdentity)
		}
		var err error
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return fmt.Errorf("%v: %w", err, ErrMalformed)
		}
	}
	id, err := CertIdentity(leaf)
	if err != nil {
		return err
	}
	if id.Role != role {
		return fmt.Errorf("own certificate is %v, want role %v: %w", id, role, ErrRoleNotAllowed)
	}
	return nil
}

// clientConfig builds the configuration of a client holding a certificate
// of role, talking to a coordinator.
func clientConfig(cert tls.Certificate, role Role, roots *x509.CertPool, rev Revoker, nextProtos []string) (*tls.Config, error) {
	if roots == nil {
		return nil, errors.New("nil roots")
	}
	if len(nextProtos) == 0 {
		return nil, errors.New("no ALPN protocols")
	}
	if err := checkOwnCert(cert, role); err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		RootCAs:      roots,
		NextProtos:   slices.Clone(nextProtos),
		VerifyConnection: func(cs tls.ConnectionState) error {
			return checkPeer(cs, []Role{RoleCoordinator}, rev)
		},
	}, nil
}

// AgentConfig returns the TLS 1.3 client configuration of an agent with
// its certificate (see TLSCertificate), talking to a coordinator: the
// server must verify against roots, match the dialed name, and carry a
// coordinator identity. nextProtos are the ALPN names to offer.
func AgentConfig(cert tls.Certificate, roots *x509.CertPool, nextProtos ...string) (*tls.Config, error) {
	c, err := clientConfig(cert, RoleAgent, roots, nil, nextProtos)
	if err != nil {
		return nil, fmt.Errorf("identity.AgentConfig: %w", err)
	}
	return c, nil
}

// AdminConfig is AgentConfig for an operator's admin certificate.
func AdminConfig(cert tls.Certificate, roots *x509.CertPool, nextProtos ...string) (*tls.Config, error) {
	c, err := clientConfig(cert, RoleAdmin, roots, nil, nextProtos)
	if err != nil {
		return nil, fmt.Errorf("identity.AdminConfig: %w", err)
	}
	return c, nil
}

// CoordinatorClientConfig is the configuration a coordinator dials its
// peers with (Raft): its own coordinator certificate, and a server that
// must be a coordinator not revoked by rev (nil rev revokes nothing).
func CoordinatorClientConfig(cert tls.Certificate, roots *x509.CertPool, rev Revoker, nextProtos ...string) (*tls.Config, error) {
	c, err := clientConfig(cert, RoleCoordinator, roots, rev, nextProtos)
	if err != nil {
		return nil, fmt.Errorf("identity.CoordinatorClientConfig: %w", err)
	}
	return c, nil
}

// EnrollClientConfig is the configuration of an agent that has only a
// join token: no client certificate, and a server accepted only if its
// chain contains a CA certificate matching caPin (from ParseJoinToken)
// that signed the server's leaf, the leaf is valid now for server
// authentication and carries a coordinator identity. When the agent dials
// a DNS name the leaf must carry it; when it dials an IP address
// crypto/tls sends no server name and any coordinator of the pinned CA is
// accepted.
func EnrollClientConfig(caPin [32]byte, nextProtos ...string) (*tls.Config, error) {
	if len(nextProtos) == 0 {
		return nil, errors.New("identity.EnrollClientConfig: no ALPN protocols")
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: slices.Clone(nextProtos),
		// The chain is verified below against the pinned CA instead of
		// system roots; crypto/tls still checks the handshake signature
		// with the leaf's key.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyPinned(cs, caPin, time.Now())
		},
	}, nil
}

func verifyPinned(cs tls.ConnectionState, caPin [32]byte, now time.Time) error {
	if len(cs.PeerCertificates) < 2 {
		return fmt.Errorf("identity: server sent no CA certificate: %w", ErrCAPin)
	}
	roots := x509.NewCertPool()
	found := false
	for _, c := range cs.PeerCertificates[1:] {
		if Pin(c) == caPin && c.IsCA {
			roots.AddCert(c)
			found = true
		}
	}
	if !found {
		return fmt.Errorf("identity: no certificate in the server's chain matches the token's CA pin: %w", ErrCAPin)
	}
	leaf := cs.PeerCertificates[0]
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:       roots,
		DNSName:     cs.ServerName,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return fmt.Errorf("identity: server certificate: %v: %w", err, ErrCAPin)
	}
	cs.VerifiedChains = chains
	return checkPeer(cs, []Role{RoleCoordinator}, nil)
}
