package identity_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/fedge/fedge/crypto/identity"
)

// Example_enrollment walks an agent through enrollment: the cluster CA is
// created and sealed at bootstrap, the operator hands a join token to a
// new host, the agent sends a CSR, and the coordinator checks the token
// and issues a short-lived certificate.
func Example_enrollment() {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

	// Bootstrap, first coordinator: create the CA; only the sealed form
	// goes into the Raft state. The seal key reaches coordinators out of
	// band.
	ca, err := identity.NewCA(rand.Reader, "prod", now)
	if err != nil {
		panic(err)
	}
	sealKey, _ := identity.NewSealKey(rand.Reader)
	sealed, _ := ca.Seal(sealKey)
	ca, err = identity.OpenCA(sealed, sealKey) // on any coordinator
	if err != nil {
		panic(err)
	}

	// Operator: ask for a token; the coordinator stores only rec.
	token, rec, _ := identity.NewJoinToken(rand.Reader, ca, time.Hour, map[string]string{"site": "lyon"}, now)

	// New agent: the token carries the CA pin (used with
	// EnrollClientConfig); the agent makes its key, ID and request.
	_, pin, _ := identity.ParseJoinToken(token)
	key, _ := identity.NewKey(rand.Reader)
	agentID, _ := identity.NewAgentID(rand.Reader)
	csr, _ := identity.NewCSR(key, agentID)

	// Coordinator, on the enrollment ALPN: check the token, issue, and
	// commit rec.Used through Raft.
	if err := identity.VerifyJoinToken(rec, token, now); err != nil {
		panic(err)
	}
	certDER, err := ca.IssueAgent(csr, agentID, 0, now)
	if err != nil {
		panic(err)
	}
	rec.Used = true

	// Agent: trust the CA certificate sent back only if it matches the pin.
	caCert, err := identity.VerifyCAPin(ca.Certificate().Raw, pin)
	if err != nil {
		panic(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(caCert)
	cert, _ := x509.ParseCertificate(certDER)
	id, err := identity.VerifyCertificate(cert, roots, now)
	fmt.Println("identity:", id.Role, id.ID == agentID, err)
	fmt.Println("lifetime:", cert.NotAfter.Sub(now))
	fmt.Println("renew after 15h:", identity.NeedsRenewal(cert, now.Add(15*time.Hour)))
	fmt.Println("renew after 17h:", identity.NeedsRenewal(cert, now.Add(17*time.Hour)))

	// The token is one-time.
	err = identity.VerifyJoinToken(rec, token, now)
	fmt.Println("token reused:", errors.Is(err, identity.ErrTokenUsed))
	// Output:
	// identity: agent true <nil>
	// lifetime: 24h0m0s
	// renew after 15h: false
	// renew after 17h: true
	// token reused: true
}

// ExampleServerConfig shows a coordinator listener and an agent
// authenticating each other over mutual TLS 1.3.
func ExampleServerConfig() {
	now := time.Now()
	ca, _ := identity.NewCA(rand.Reader, "prod", now)

	// The coordinator's certificate carries the CA too, for enrollment.
	coordKey, _ := identity.NewKey(rand.Reader)
	coordDER, _ := ca.IssueCoordinator(coordKey.Public().(ed25519.PublicKey), "node-1", []string{"localhost"}, 0, now)
	coordCert, _ := identity.TLSCertificate(coordKey, coordDER, ca.Certificate())
	revoked := &identity.RevocationList{}
	serverCfg, err := identity.ServerConfig(identity.ServerOptions{
		Certificate: &coordCert,
		ClientCAs:   ca.Pool(),
		Revoker:     revoked,
	})
	if err != nil {
		panic(err)
	}

	agentKey, _ := identity.NewKey(rand.Reader)
	csr, _ := identity.NewCSR(agentKey, "ag-example")
	agentDER, _ := ca.IssueAgent(csr, "ag-example", 0, now)
	agentCert, _ := identity.TLSCertificate(agentKey, agentDER, nil)
	agentCfg, _ := identity.AgentConfig(agentCert, ca.Pool(), identity.ALPNAgent)
	agentCfg.ServerName = "localhost"

	c1, c2 := net.Pipe()
	go func() {
		srv := tls.Server(c1, serverCfg)
		defer srv.Close()
		if err := srv.Handshake(); err != nil {
			return
		}
		cs := srv.ConnectionState()
		id, _ := identity.PeerIdentity(cs)
		fmt.Fprintf(srv, "coordinator sees %v on %s\n", id, cs.NegotiatedProtocol)
	}()
	cli := tls.Client(c2, agentCfg)
	defer cli.Close()
	if err := cli.Handshake(); err != nil {
		panic(err)
	}
	id, _ := identity.PeerIdentity(cli.ConnectionState())
	msg, err := io.ReadAll(cli) // the server's line; also drains session tickets
	if err != nil {
		panic(err)
	}
	fmt.Print(string(msg))
	fmt.Println("agent sees", id)
	// Output:
	// coordinator sees fedge://agent/ag-example on fedge-agent/1
	// agent sees fedge://coordinator/node-1
}
