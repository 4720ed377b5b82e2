// Package identity issues and checks the identities of a fedge fleet: the
// cluster's Ed25519 X.509 CA, one-time join tokens, agent enrollment by CSR,
// certificate renewal and revocation, and the TLS 1.3 mutual-auth
// configurations for each role (agent, coordinator, admin).
//
// # Identities
//
// Every certificate carries exactly one URI SAN naming its holder:
// fedge://agent/<id>, fedge://coordinator/<node-id> or fedge://admin/<name>
// (Identity, ParseIdentity). Coordinator certificates also carry the DNS
// names and IP addresses agents dial. IDs are lower-case (ValidateID);
// agents pick theirs with NewAgentID.
//
// # The CA
//
// NewCA creates the cluster's self-signed root at bootstrap. Every
// coordinator needs it to issue certificates, so it lives in the
// Raft-replicated state in sealed form: CA.Seal encrypts the private key
// with AES-256-GCM under a key derived by HKDF-SHA256 from a 32-byte seal
// key (NewSealKey) that the operator gives every coordinator out of band;
// OpenCA reverses it and fails with ErrSealKey on a wrong key.
//
// # Enrollment
//
//  1. The coordinator creates a join token (NewJoinToken) and stores only
//     its TokenRecord; the operator copies the token string,
//     fedge1.<id>.<secret>.<ca-pin>, to the new host.
//  2. The agent reads the CA pin (ParseJoinToken), dials the coordinator
//     with EnrollClientConfig on the enrollment ALPN — the coordinator's
//     chain must contain the pinned CA — and sends the token and a CSR
//     (NewKey, NewAgentID, NewCSR).
//  3. The coordinator checks the token (VerifyJoinToken), refuses an agent
//     ID already enrolled, issues the certificate (CA.IssueAgent), and
//     commits the record as Used. It returns the certificate and the CA
//     certificate, which the agent checks with VerifyCAPin.
//  4. From then on the agent connects with AgentConfig and renews before
//     expiry (NeedsRenewal, CA.Renew), over its authenticated session.
//
// # Connections
//
// ServerConfig builds a coordinator listener that serves several ALPN
// protocols, each open to some roles only (DefaultProtocols: agents on
// ALPNAgent, coordinators on ALPNRaft, admins on ALPNAdmin, clients
// without a certificate on ALPNEnroll), and consults a Revoker — usually
// the replicated RevocationList — on every handshake, resumed ones
// included. PeerIdentity returns the verified identity of the peer.
//
// In TLS 1.3 a client finishes its handshake before the server has checked
// the client's certificate: a refused client learns it on its first read,
// not from the handshake.
//
// The package is pure: it does no I/O beyond reading the random sources
// it is given (and crypto/rand for serial numbers, salts and nonces), and
// runs no goroutines.
package identity
