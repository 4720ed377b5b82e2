package identity

import (
	"crypto/x509"
	"encoding/base32"
	"fmt"
	"io"
	"net/url"
	"strings"
)

// Role is what a certificate holder is to the cluster. Its numeric values
// are stored in revocation lists: the list is append-only.
type Role uint8

// Roles. The zero Role is invalid.
const (
	// RoleAgent is an enrolled edge agent: it trains and serves inference.
	RoleAgent Role = 1
	// RoleCoordinator is a member of the Raft cluster; it holds the CA.
	RoleCoordinator Role = 2
	// RoleAdmin is an operator driving the admin API.
	RoleAdmin Role = 3
)

// String returns "agent", "coordinator" or "admin", the role's name in an
// identity URI, or "role(N)" for an invalid role.
func (r Role) String() string {
	switch r {
	case RoleAgent:
		return "agent"
	case RoleCoordinator:
		return "coordinator"
	case RoleAdmin:
		return "admin"
	}
	return fmt.Sprintf("role(%d)", uint8(r))
}

// Valid reports whether r is one of the defined roles.
func (r Role) Valid() bool { return r >= RoleAgent && r <= RoleAdmin }

// ParseRole is the inverse of Role.String for valid roles.
func ParseRole(s string) (Role, error) {
	switch s {
	case "agent":
		return RoleAgent, nil
	case "coordinator":
		return RoleCoordinator, nil
	case "admin":
		return RoleAdmin, nil
	}
	return 0, fmt.Errorf("identity.ParseRole %q: %w", s, ErrInvalidID)
}

// MaxIDLen is the longest ID (agent ID, coordinator node ID, admin name,
// cluster name) this package accepts.
const MaxIDLen = 64

// ValidateID checks the syntax shared by agent IDs, coordinator node IDs,
// admin names and cluster names: 1 to MaxIDLen bytes of lower-case ASCII
// letters, digits, '-', '_' and '.', starting with a letter or a digit.
// Upper case is refused so that two IDs never differ only by case.
func ValidateID(id string) error {
	if len(id) == 0 || len(id) > MaxIDLen {
		return fmt.Errorf("identity.ValidateID: length %d not in [1,%d]: %w", len(id), MaxIDLen, ErrInvalidID)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '-' || c == '_' || c == '.') && i > 0:
		default:
			return fmt.Errorf("identity.ValidateID %q: byte %d: %w", id, i, ErrInvalidID)
		}
	}
	return nil
}

// Identity is the verified role and ID of a certificate holder. It is
// carried in the certificate as one URI SAN, fedge://<role>/<id>.
type Identity struct {
	Role Role
	ID   string
}

// String returns the identity URI, e.g. "fedge://agent/ag-abcdefgh23456789".
func (id Identity) String() string { return uriScheme + "://" + id.Role.String() + "/" + id.ID }

// Validate checks that the role is defined and the ID well formed.
func (id Identity) Validate() error {
	if !id.Role.Valid() {
		return fmt.Errorf("identity.Identity.Validate: %s: %w", id.Role, ErrInvalidID)
	}
	if err := ValidateID(id.ID); err != nil {
		return fmt.Errorf("identity.Identity.Validate: %w", err)
	}
	return nil
}

// URL returns the identity as a URL, the form stored in a certificate.
func (id Identity) URL() *url.URL {
	return &url.URL{Scheme: uriScheme, Host: id.Role.String(), Path: "/" + id.ID}
}

const uriScheme = "fedge"

// ParseIdentity parses an identity URI as printed by Identity.String.
func ParseIdentity(s string) (Identity, error) {
	if len(s) > 128 {
		return Identity{}, fmt.Errorf("identity.ParseIdentity: too long: %w", ErrInvalidID)
	}
	u, err := url.Parse(s)
	if err != nil {
		return Identity{}, fmt.Errorf("identity.ParseIdentity: %v: %w", err, ErrInvalidID)
	}
	id, err := identityFromURL(u)
	if err != nil {
		return Identity{}, fmt.Errorf("identity.ParseIdentity: %w", err)
	}
	return id, nil
}

// identityFromURL accepts exactly fedge://<role>/<id> with nothing else:
// no user, port, query, fragment, escaping or trailing path.
func identityFromURL(u *url.URL) (Identity, error) {
	if u.Scheme != uriScheme || u.Opaque != "" || u.User != nil || u.RawQuery != "" ||
		u.ForceQuery || u.Fragment != "" || u.RawFragment != "" || u.RawPath != "" ||
		!strings.HasPrefix(u.Path, "/") {
		return Identity{}, fmt.Errorf("not a %s identity URI %q: %w", uriScheme, u.String(), ErrInvalidID)
	}
	role, err := ParseRole(u.Host)
	if err != nil {
		return Identity{}, err
	}
	id := Identity{Role: role, ID: u.Path[1:]}
	if err := ValidateID(id.ID); err != nil {
		return Identity{}, err
	}
	return id, nil
}

// identityFromURIs returns the identity of a certificate or request whose
// URI SANs are exactly one fedge identity URI. ok is false when there are
// no URI SANs at all.
func identityFromURIs(uris []*url.URL) (id Identity, ok bool, err error) {
	switch len(uris) {
	case 0:
		return Identity{}, false, nil
	case 1:
		id, err := identityFromURL(uris[0])
		return id, err == nil, err
	}
	return Identity{}, false, fmt.Errorf("%d URI SANs, want 1: %w", len(uris), ErrNoIdentity)
}

// CertIdentity returns the identity carried by cert's URI SAN. It does not
// verify the certificate: use VerifyCertificate, or PeerIdentity on a TLS
// connection, for identities that are trusted.
func CertIdentity(cert *x509.Certificate) (Identity, error) {
	if cert == nil {
		return Identity{}, fmt.Errorf("identity.CertIdentity: nil certificate: %w", ErrNoIdentity)
	}
	id, ok, err := identityFromURIs(cert.URIs)
	if err != nil {
		return Identity{}, fmt.Errorf("identity.CertIdentity: %w", err)
	}
	if !ok {
		return Identity{}, fmt.Errorf("identity.CertIdentity: no URI SAN: %w", ErrNoIdentity)
	}
	return id, nil
}

// agentIDPrefix starts every generated agent ID.
const agentIDPrefix = "ag-"

// agentIDBytes is the entropy of a generated agent ID (80 bits).
const agentIDBytes = 10

// b32 is lower-case unpadded base32 (RFC 4648 alphabet), used for agent
// IDs and join tokens: case-free, no look-alike padding, safe in URIs.
func b32() *base32.Encoding {
	return base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)
}

// NewAgentID returns a fresh random agent ID, "ag-" followed by 16 base32
// characters (80 random bits), read from rand.
func NewAgentID(rand io.Reader) (string, error) {
	var b [agentIDBytes]byte
	if _, err := io.ReadFull(rand, b[:]); err != nil {
		return "", fmt.Errorf("identity.NewAgentID: %w", err)
	}
	return agentIDPrefix + b32().EncodeToString(b[:]), nil
}
