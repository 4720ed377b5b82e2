package identity

import "errors"

// Sentinel errors. Functions of this package wrap them with their own name
// ("identity.OpenCA: ..."); test for them with errors.Is.
var (
	// ErrInvalidID reports an ID, role, cluster name, identity URI or label
	// that does not follow the syntax of this package.
	ErrInvalidID = errors.New("identity: invalid identifier")

	// ErrMalformed reports bytes that do not decode: a sealed CA, a token
	// record, a revocation list, a certificate or a request.
	ErrMalformed = errors.New("identity: malformed input")

	// ErrSealKey reports a sealed CA that does not open under the given key:
	// the key is wrong or the sealed bytes were altered.
	ErrSealKey = errors.New("identity: wrong seal key or tampered sealed CA")

	// ErrTokenInvalid reports a join token that is malformed or whose ID or
	// secret does not match the stored record.
	ErrTokenInvalid = errors.New("identity: invalid join token")

	// ErrTokenExpired reports a join token used at or after its expiry.
	ErrTokenExpired = errors.New("identity: join token expired")

	// ErrTokenUsed reports a one-time join token that was already used.
	ErrTokenUsed = errors.New("identity: join token already used")

	// ErrIdentityMismatch reports a certificate request that names another
	// identity than the one being issued or renewed.
	ErrIdentityMismatch = errors.New("identity: identity mismatch")

	// ErrNoIdentity reports a certificate or a connection that carries no
	// verified fedge identity.
	ErrNoIdentity = errors.New("identity: no verified identity")

	// ErrCertInvalid reports a certificate that does not verify against the
	// cluster CA at the given time (expired, not yet valid, another CA).
	ErrCertInvalid = errors.New("identity: certificate not valid")

	// ErrRevoked reports a certificate whose serial number or identity is
	// revoked.
	ErrRevoked = errors.New("identity: certificate revoked")

	// ErrRoleNotAllowed reports a peer whose role may not use the negotiated
	// protocol (an agent on the admin ALPN, an admin acting as a server).
	ErrRoleNotAllowed = errors.New("identity: role not allowed")

	// ErrCAPin reports a CA certificate whose public key does not match the
	// pin carried by a join token.
	ErrCAPin = errors.New("identity: CA pin mismatch")
)
