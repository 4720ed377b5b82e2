package identity_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/fedge/fedge/crypto/identity"
	"github.com/fedge/fedge/internal/testutil"
)

// outcome is what both ends of one handshake saw.
type outcome struct {
	serverErr, clientErr error
	server, client       tls.ConnectionState
}

func (o outcome) ok() bool { return o.serverErr == nil && o.clientErr == nil }

// connPair returns the two ends of a loopback TCP connection. (net.Pipe
// is unbuffered, and a TLS 1.3 server that sends session tickets in its
// first flight deadlocks against a client writing its Finished.)
func connPair(t testing.TB) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		ch <- res{c, err}
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.c, client
}

// handshake runs a TLS handshake over loopback TCP and one
// server-to-client read, which in TLS 1.3 is where the client learns that
// the server refused its certificate.
func handshake(t testing.TB, srvCfg, cliCfg *tls.Config) outcome {
	t.Helper()
	c1, c2 := connPair(t)
	deadline := time.Now().Add(10 * time.Second)
	_ = c1.SetDeadline(deadline)
	_ = c2.SetDeadline(deadline)
	srv, cli := tls.Server(c1, srvCfg), tls.Client(c2, cliCfg)
	type res struct {
		err error
		st  tls.ConnectionState
	}
	ch := make(chan res, 1)
	go func() {
		err := srv.Handshake()
		if err == nil {
			_, err = srv.Write([]byte("ok"))
		}
		st := srv.ConnectionState()
		_ = srv.Close()
		ch <- res{err, st}
	}()
	var o outcome
	o.clientErr = cli.Handshake()
	if o.clientErr == nil {
		var buf [2]byte
		_, o.clientErr = io.ReadFull(cli, buf[:])
	}
	o.client = cli.ConnectionState()
	_ = cli.Close()
	r := <-ch
	o.serverErr, o.server = r.err, r.st
	return o
}

// env is a cluster CA with a coordinator listener configuration.
type env struct {
	ca     *identity.CA
	rev    *identity.RevocationList
	coord  tls.Certificate
	server *tls.Config
}

func newEnv(t testing.TB) *env {
	t.Helper()
	now := time.Now()
	e := &env{ca: newCA(t, "prod", now), rev: &identity.RevocationList{}}
	e.coord = coordCert(t, e.ca, "node-1", now)
	var err error
	e.server, err = identity.ServerConfig(identity.ServerOptions{
		Certificate: &e.coord,
		ClientCAs:   e.ca.Pool(),
		Revoker:     e.rev,
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// client builds a client configuration with a certificate of any role,
// bypassing the role checks of AgentConfig so that tests can present
// wrong certificates to the server.
func (e *env) client(t testing.TB, cert *tls.Certificate, protos ...string) *tls.Config {
	t.Helper()
	c := &tls.Config{
		MinVersion: tls.VersionTLS13,
		RootCAs:    e.ca.Pool(),
		ServerName: "localhost",
		NextProtos: protos,
	}
	if cert != nil {
		c.Certificates = []tls.Certificate{*cert}
	}
	return c
}

func TestHandshakeRoles(t *testing.T) {
	e := newEnv(t)
	now := time.Now()
	agent := agentCert(t, e.ca, "ag-one", 0, now)
	admin := adminCert(t, e.ca, "alice", now)
	peer := coordCert(t, e.ca, "node-2", now)

	agentCfg, err := identity.AgentConfig(agent, e.ca.Pool(), identity.ALPNAgent)
	if err != nil {
		t.Fatal(err)
	}
	agentCfg.ServerName = "localhost"
	adminCfg, err := identity.AdminConfig(admin, e.ca.Pool(), identity.ALPNAdmin)
	if err != nil {
		t.Fatal(err)
	}
	adminCfg.ServerName = "127.0.0.1"
	raftCfg, err := identity.CoordinatorClientConfig(peer, e.ca.Pool(), e.rev, identity.ALPNRaft)
	if err != nil {
		t.Fatal(err)
	}
	raftCfg.ServerName = "localhost"

	ok := []struct {
		name  string
		cfg   *tls.Config
		proto string
		want  identity.Identity
	}{
		{"agent", agentCfg, identity.ALPNAgent, identity.Identity{Role: identity.RoleAgent, ID: "ag-one"}},
		{"admin", adminCfg, identity.ALPNAdmin, identity.Identity{Role: identity.RoleAdmin, ID: "alice"}},
		{"coordinator", raftCfg, identity.ALPNRaft, identity.Identity{Role: identity.RoleCoordinator, ID: "node-2"}},
	}
	for _, tt := range ok {
		t.Run(tt.name, func(t *testing.T) {
			o := handshake(t, e.server, tt.cfg)
			if !o.ok() {
				t.Fatalf("server %v, client %v", o.serverErr, o.clientErr)
			}
			if o.server.NegotiatedProtocol != tt.proto || o.server.Version != tls.VersionTLS13 {
				t.Errorf("negotiated %q version %x", o.server.NegotiatedProtocol, o.server.Version)
			}
			if id, err := identity.PeerIdentity(o.server); err != nil || id != tt.want {
				t.Errorf("server sees %v, %v; want %v", id, err, tt.want)
			}
			if id, err := identity.PeerIdentity(o.client); err != nil || id != (identity.Identity{Role: identity.RoleCoordinator, ID: "node-1"}) {
				t.Errorf("client sees %v, %v", id, err)
			}
		})
	}

	refused := []struct {
		name  string
		cert  *tls.Certificate
		proto string
	}{
		{"agent on admin ALPN", &agent, identity.ALPNAdmin},
		{"agent on raft ALPN", &agent, identity.ALPNRaft},
		{"admin on agent ALPN", &admin, identity.ALPNAgent},
		{"coordinator on admin ALPN", &peer, identity.ALPNAdmin},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			o := handshake(t, e.server, e.client(t, tt.cert, tt.proto))
			if !errors.Is(o.serverErr, identity.ErrRoleNotAllowed) || o.clientErr == nil {
				t.Fatalf("server %v, client %v; want ErrRoleNotAllowed", o.serverErr, o.clientErr)
			}
		})
	}
}

func TestHandshakeRefusesBadCertificates(t *testing.T) {
	e := newEnv(t)
	now := time.Now()
	expired := agentCert(t, e.ca, "ag-old", time.Hour, now.Add(-48*time.Hour))
	foreignCA := newCA(t, "prod", now)
	foreign := agentCert(t, foreignCA, "ag-one", 0, now)

	o := handshake(t, e.server, e.client(t, &expired, identity.ALPNAgent))
	var inv x509.CertificateInvalidError
	if !errors.As(o.serverErr, &inv) || inv.Reason != x509.Expired || o.clientErr == nil {
		t.Errorf("expired: server %v, client %v", o.serverErr, o.clientErr)
	}
	o = handshake(t, e.server, e.client(t, &foreign, identity.ALPNAgent))
	var unk x509.UnknownAuthorityError
	if !errors.As(o.serverErr, &unk) || o.clientErr == nil {
		t.Errorf("other CA: server %v, client %v", o.serverErr, o.clientErr)
	}
	for _, proto := range []string{identity.ALPNAgent, identity.ALPNAdmin, identity.ALPNRaft} {
		o = handshake(t, e.server, e.client(t, nil, proto))
		if o.serverErr == nil || o.clientErr == nil {
			t.Errorf("no certificate on %s accepted", proto)
		}
	}
	o = handshake(t, e.server, e.client(t, &expired, "h2"))
	if !errors.Is(o.serverErr, identity.ErrRoleNotAllowed) || o.clientErr == nil {
		t.Errorf("unknown ALPN: server %v, client %v", o.serverErr, o.clientErr)
	}
	o = handshake(t, e.server, e.client(t, &expired))
	if o.serverErr == nil || o.clientErr == nil {
		t.Errorf("no ALPN accepted")
	}
}

func TestHandshakeRevocation(t *testing.T) {
	e := newEnv(t)
	now := time.Now()
	a1 := agentCert(t, e.ca, "ag-one", 0, now)
	a2 := agentCert(t, e.ca, "ag-two", 0, now)
	a2b := agentCert(t, e.ca, "ag-two", 0, now)
	for _, c := range []*tls.Certificate{&a1, &a2, &a2b} {
		if o := handshake(t, e.server, e.client(t, c, identity.ALPNAgent)); !o.ok() {
			t.Fatalf("before revocation: %v / %v", o.serverErr, o.clientErr)
		}
	}
	// The same server configuration sees revocations made at runtime.
	if err := e.rev.RevokeSerial(a1.Leaf.SerialNumber, a1.Leaf.NotAfter); err != nil {
		t.Fatal(err)
	}
	if err := e.rev.RevokeIdentity(identity.Identity{Role: identity.RoleAgent, ID: "ag-two"}); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*tls.Certificate{"serial": &a1, "identity": &a2, "identity, other cert": &a2b} {
		o := handshake(t, e.server, e.client(t, c, identity.ALPNAgent))
		if !errors.Is(o.serverErr, identity.ErrRevoked) || o.clientErr == nil {
			t.Errorf("revoked by %s: server %v, client %v", name, o.serverErr, o.clientErr)
		}
	}
	e.rev.UnrevokeIdentity(identity.Identity{Role: identity.RoleAgent, ID: "ag-two"})
	if o := handshake(t, e.server, e.client(t, &a2, identity.ALPNAgent)); !o.ok() {
		t.Errorf("after UnrevokeIdentity: %v / %v", o.serverErr, o.clientErr)
	}
}

// TestHandshakeResumption checks that a resumed session is held to the
// same rules: revocation and the role of the protocol.
func TestHandshakeResumption(t *testing.T) {
	e := newEnv(t)
	agent := agentCert(t, e.ca, "ag-one", 0, time.Now())
	cache := tls.NewLRUClientSessionCache(8)
	cfg := e.client(t, &agent, identity.ALPNAgent)
	cfg.ClientSessionCache = cache
	if o := handshake(t, e.server, cfg); !o.ok() || o.server.DidResume {
		t.Fatalf("first: %v / %v resumed=%v", o.serverErr, o.clientErr, o.server.DidResume)
	}
	o := handshake(t, e.server, cfg)
	if !o.ok() || !o.server.DidResume {
		t.Fatalf("second: %v / %v resumed=%v", o.serverErr, o.clientErr, o.server.DidResume)
	}
	if id, err := identity.PeerIdentity(o.server); err != nil || id.ID != "ag-one" {
		t.Errorf("resumed identity %v %v", id, err)
	}
	admin := e.client(t, &agent, identity.ALPNAdmin)
	admin.ClientSessionCache = cache
	// crypto/tls resumes across ALPN names (the ticket keys are shared by
	// the per-protocol configurations); VerifyConnection must refuse it.
	o = handshake(t, e.server, admin)
	if !errors.Is(o.serverErr, identity.ErrRoleNotAllowed) {
		t.Errorf("agent session on admin ALPN: server %v resumed=%v", o.serverErr, o.server.DidResume)
	}
	if !o.server.DidResume {
		t.Log("note: crypto/tls no longer resumes across ALPN names; the full-handshake path was tested instead")
	}
	if err := e.rev.RevokeSerial(agent.Leaf.SerialNumber, agent.Leaf.NotAfter); err != nil {
		t.Fatal(err)
	}
	if o := handshake(t, e.server, cfg); !errors.Is(o.serverErr, identity.ErrRevoked) || o.clientErr == nil {
		t.Errorf("revoked after resumption: server %v, client %v", o.serverErr, o.clientErr)
	}
}

func TestEnrollHandshake(t *testing.T) {
	e := newEnv(t)
	cfg, err := identity.EnrollClientConfig(e.ca.Pin(), identity.ALPNEnroll)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ServerName = "localhost"
	o := handshake(t, e.server, cfg)
	if !o.ok() || o.server.NegotiatedProtocol != identity.ALPNEnroll {
		t.Fatalf("enroll: server %v, client %v, proto %q", o.serverErr, o.clientErr, o.server.NegotiatedProtocol)
	}
	if _, err := identity.PeerIdentity(o.server); !errors.Is(err, identity.ErrNoIdentity) {
		t.Errorf("enrolling client has identity: %v", err)
	}
	// The enroll client offers no certificate, so the agent ALPN refuses it.
	agentProto, _ := identity.EnrollClientConfig(e.ca.Pin(), identity.ALPNAgent)
	agentProto.ServerName = "localhost"
	if o := handshake(t, e.server, agentProto); o.serverErr == nil {
		t.Error("certificate-less client accepted on the agent ALPN")
	}

	// A wrong pin refuses the server.
	other := newCA(t, "prod", time.Now())
	bad, _ := identity.EnrollClientConfig(other.Pin(), identity.ALPNEnroll)
	bad.ServerName = "localhost"
	if o := handshake(t, e.server, bad); !errors.Is(o.clientErr, identity.ErrCAPin) {
		t.Errorf("wrong pin: client %v", o.clientErr)
	}
	// A name the coordinator's certificate does not carry refuses it.
	wrongName, _ := identity.EnrollClientConfig(e.ca.Pin(), identity.ALPNEnroll)
	wrongName.ServerName = "evil.example"
	if o := handshake(t, e.server, wrongName); !errors.Is(o.clientErr, identity.ErrCAPin) {
		t.Errorf("wrong server name: client %v", o.clientErr)
	}
	// An impostor with a self-made CA that copies the name but not the key.
	imp := newEnv(t)
	if o := handshake(t, imp.server, cfg); !errors.Is(o.clientErr, identity.ErrCAPin) {
		t.Errorf("impostor coordinator: client %v", o.clientErr)
	}
	// A coordinator whose chain lacks the CA cannot be checked.
	leafOnly := e.coord
	leafOnly.Certificate = leafOnly.Certificate[:1]
	srv, err := identity.ServerConfig(identity.ServerOptions{Certificate: &leafOnly, ClientCAs: e.ca.Pool(), Revoker: e.rev})
	if err != nil {
		t.Fatal(err)
	}
	if o := handshake(t, srv, cfg); !errors.Is(o.clientErr, identity.ErrCAPin) {
		t.Errorf("chain without CA: client %v", o.clientErr)
	}
}

func TestClientRefusesServers(t *testing.T) {
	e := newEnv(t)
	now := time.Now()
	agent := agentCert(t, e.ca, "ag-one", 0, now)
	cfg, err := identity.AgentConfig(agent, e.ca.Pool(), identity.ALPNAgent)
	if err != nil {
		t.Fatal(err)
	}
	// Server name not in the coordinator's SANs.
	wrong := cfg.Clone()
	wrong.ServerName = "coord-9.example"
	if o := handshake(t, e.server, wrong); o.clientErr == nil {
		t.Error("agent accepted a server name the certificate does not carry")
	}
	// A coordinator of another cluster.
	other := newEnv(t)
	good := cfg.Clone()
	good.ServerName = "localhost"
	if o := handshake(t, other.server, good); o.clientErr == nil {
		t.Error("agent accepted a coordinator of another CA")
	}
	// A revoked coordinator, seen by a Raft peer.
	peer := coordCert(t, e.ca, "node-2", now)
	rev := &identity.RevocationList{}
	_ = rev.RevokeIdentity(identity.Identity{Role: identity.RoleCoordinator, ID: "node-1"})
	raft, err := identity.CoordinatorClientConfig(peer, e.ca.Pool(), rev, identity.ALPNRaft)
	if err != nil {
		t.Fatal(err)
	}
	raft.ServerName = "localhost"
	if o := handshake(t, e.server, raft); !errors.Is(o.clientErr, identity.ErrRevoked) {
		t.Errorf("revoked coordinator: client %v", o.clientErr)
	}
	// An agent posing as a server: its certificate lacks server auth.
	fake := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{agent}, NextProtos: []string{identity.ALPNAgent}}
	if o := handshake(t, fake, good); o.clientErr == nil {
		t.Error("agent accepted an agent certificate as its server")
	}
}

func TestConfigValidation(t *testing.T) {
	e := newEnv(t)
	now := time.Now()
	agent := agentCert(t, e.ca, "ag-one", 0, now)
	admin := adminCert(t, e.ca, "alice", now)
	get := func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &e.coord, nil }
	bad := map[string]identity.ServerOptions{
		"no certificate":  {ClientCAs: e.ca.Pool(), Revoker: e.rev},
		"two sources":     {Certificate: &e.coord, GetCertificate: get, ClientCAs: e.ca.Pool(), Revoker: e.rev},
		"no CAs":          {Certificate: &e.coord, Revoker: e.rev},
		"no revoker":      {Certificate: &e.coord, ClientCAs: e.ca.Pool()},
		"agent as server": {Certificate: &agent, ClientCAs: e.ca.Pool(), Revoker: e.rev},
		"no protocols":    {Certificate: &e.coord, ClientCAs: e.ca.Pool(), Revoker: e.rev, Protocols: []identity.Protocol{}},
		"duplicate": {Certificate: &e.coord, ClientCAs: e.ca.Pool(), Revoker: e.rev, Protocols: []identity.Protocol{
			{Name: "x", Roles: []identity.Role{identity.RoleAgent}}, {Name: "x", Enroll: true}}},
		"enroll with roles": {Certificate: &e.coord, ClientCAs: e.ca.Pool(), Revoker: e.rev, Protocols: []identity.Protocol{
			{Name: "x", Roles: []identity.Role{identity.RoleAgent}, Enroll: true}}},
		"no roles": {Certificate: &e.coord, ClientCAs: e.ca.Pool(), Revoker: e.rev, Protocols: []identity.Protocol{{Name: "x"}}},
		"bad role": {Certificate: &e.coord, ClientCAs: e.ca.Pool(), Revoker: e.rev, Protocols: []identity.Protocol{
			{Name: "x", Roles: []identity.Role{7}}}},
	}
	for name, opts := range bad {
		if _, err := identity.ServerConfig(opts); err == nil {
			t.Errorf("ServerConfig accepted %s", name)
		}
	}
	if _, err := identity.AgentConfig(admin, e.ca.Pool(), identity.ALPNAgent); !errors.Is(err, identity.ErrRoleNotAllowed) {
		t.Errorf("AgentConfig with an admin certificate: %v", err)
	}
	if _, err := identity.AdminConfig(agent, e.ca.Pool(), identity.ALPNAdmin); !errors.Is(err, identity.ErrRoleNotAllowed) {
		t.Errorf("AdminConfig with an agent certificate: %v", err)
	}
	if _, err := identity.CoordinatorClientConfig(agent, e.ca.Pool(), nil, identity.ALPNRaft); !errors.Is(err, identity.ErrRoleNotAllowed) {
		t.Errorf("CoordinatorClientConfig with an agent certificate: %v", err)
	}
	leafless := agent
	leafless.Leaf = nil
	if _, err := identity.AgentConfig(leafless, e.ca.Pool(), identity.ALPNAgent); err != nil {
		t.Errorf("AgentConfig of a certificate without Leaf: %v", err)
	}
	if _, err := identity.AgentConfig(tls.Certificate{}, e.ca.Pool(), identity.ALPNAgent); !errors.Is(err, identity.ErrNoIdentity) {
		t.Errorf("AgentConfig of an empty certificate: %v", err)
	}
	if _, err := identity.AgentConfig(agent, nil, identity.ALPNAgent); err == nil {
		t.Error("AgentConfig without roots accepted")
	}
	if _, err := identity.AgentConfig(agent, e.ca.Pool()); err == nil {
		t.Error("AgentConfig without ALPN accepted")
	}
	if _, err := identity.EnrollClientConfig(e.ca.Pin()); err == nil {
		t.Error("EnrollClientConfig without ALPN accepted")
	}

	// GetCertificate: a renewed certificate is served without a new config.
	cur := e.coord
	srv, err := identity.ServerConfig(identity.ServerOptions{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cur, nil },
		ClientCAs:      e.ca.Pool(), Revoker: e.rev,
		Protocols: []identity.Protocol{{Name: "custom/1", Roles: []identity.Role{identity.RoleAgent, identity.RoleAdmin}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	cur = coordCert(t, e.ca, "node-1b", now)
	cfg, _ := identity.AgentConfig(agent, e.ca.Pool(), "h2", "custom/1")
	cfg.ServerName = "localhost"
	o := handshake(t, srv, cfg)
	if !o.ok() || o.server.NegotiatedProtocol != "custom/1" {
		t.Fatalf("custom protocol: %v / %v", o.serverErr, o.clientErr)
	}
	if id, _ := identity.PeerIdentity(o.client); id.ID != "node-1b" {
		t.Errorf("served certificate %v, want the swapped-in node-1b", id)
	}
}

// TestLoopbackTCP runs the agent and enrollment handshakes through a real
// TCP listener, with the server name taken from the dialed address.
func TestLoopbackTCP(t *testing.T) {
	e := newEnv(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", e.server)
	if err != nil {
		testutil.Missing(t, "no loopback TCP: %v", err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				tc := c.(*tls.Conn)
				if tc.Handshake() != nil {
					return
				}
				id, err := identity.PeerIdentity(tc.ConnectionState())
				msg := id.String()
				if err != nil {
					msg = "enroll"
				}
				_, _ = io.WriteString(tc, msg+"\n")
			}()
		}
	}()
	agent := agentCert(t, e.ca, "ag-one", 0, time.Now())
	agentCfg, _ := identity.AgentConfig(agent, e.ca.Pool(), identity.ALPNAgent)
	enrollCfg, _ := identity.EnrollClientConfig(e.ca.Pin(), identity.ALPNEnroll)
	for want, cfg := range map[string]*tls.Config{"fedge://agent/ag-one\n": agentCfg, "enroll\n": enrollCfg} {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", ln.Addr().String(), cfg)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil || string(got) != want {
			t.Errorf("read %q, %v; want %q", got, err, want)
		}
	}
}
