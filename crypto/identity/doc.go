// Package identity issues and checks the identities of a fedge fleet: the
// cluster's Ed25519 X.509 CA, one-time join tokens, agent enrollment by CSR,
// certificate renewal and revocation, and the TLS 1.3 mutual-auth
// configurations for each role (agent, coordinator, admin).
package identity
