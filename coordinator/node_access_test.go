package coordinator_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedge/fedge/coordinator"
	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/crypto/identity"
	"github.com/fedge/fedge/internal/testutil"
	"github.com/fedge/fedge/protocol"
)

// startOne starts a one-node cluster initialised with opt and configured
// with sec, and returns the node and an admin client once the cluster is
// bootstrapped.
func startOne(t *testing.T, opt coordinator.InitOptions, sec func(dir string, key []byte) coordinator.SecurityConfig) (*coordinator.Node, *api.Client, string) {
	t.Helper()
	dir := t.TempDir()
	addr := testutil.FreeUDPAddrs(t, 1)[0]
	peers := []coordinator.Peer{{ID: "c1", Addr: addr}}
	key, err := coordinator.InitClusterWith(rand.Reader, "access", peers, dir, time.Now(), opt)
	if err != nil {
		t.Fatal(err)
	}
	cfg := coordinator.Config{NodeID: "c1", DataDir: filepath.Join(dir, "c1"), Listen: addr, Peers: peers, Raft: coordinator.LoopbackRaftTimings, Logger: testLogger()}
	if sec != nil {
		cfg.SecurityConfig = sec(dir, key)
	}
	nd, err := coordinator.NewNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nd.Close() })
	adm, err := api.Load(filepath.Join(dir, "admin"), []string{addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { adm.Close() })
	testutil.WaitFor(t, 15*time.Second, "bootstrap", func() bool {
		var ok bool
		nd.FSM().Read(func(s *coordinator.State) { ok = len(s.CA) > 0 })
		return ok && nd.IsLeader()
	})
	return nd, adm, dir
}

func wireCode(err error) protocol.ErrorCode {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		return pe.Code
	}
	return 0
}

// TestRevokedAdminRefusedAtHandshake mints an operator certificate through
// the cluster, revokes it, and checks that the admin ALPN handshake then
// refuses it over real QUIC, and that its open session is cut off too.
func TestRevokedAdminRefusedAtHandshake(t *testing.T) {
	nd, adm, _ := startOne(t, coordinator.InitOptions{}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// fedge init's credential is recorded at bootstrap.
	var admins []api.Admin
	if err := adm.Call(ctx, api.VerbAdminsList, api.QueryOptions{}, nil, &admins); err != nil {
		t.Fatal(err)
	}
	if len(admins) != 1 || admins[0].Name != "admin" || admins[0].CreatedBy != "fedge init" || admins[0].Revoked {
		t.Fatalf("admins after init: %+v", admins)
	}

	key, _ := identity.NewKey(rand.Reader)
	var resp api.AdminCertResponse
	if err := adm.Call(ctx, api.VerbAdminCert, api.QueryOptions{}, api.AdminCertRequest{Name: "bob", PublicKey: key.Public().(ed25519.PublicKey)}, &resp); err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(resp.CACert)
	if err != nil {
		t.Fatal(err)
	}
	bobTLS, err := identity.TLSCertificate(key, resp.Cert, caCert)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(caCert)
	bobConf, err := identity.AdminConfig(bobTLS, roots, protocol.ALPNAdmin)
	if err != nil {
		t.Fatal(err)
	}
	dialBob := func() (*protocol.Session, error) {
		dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
		defer dcancel()
		return protocol.Dial(dctx, nd.Addr(), bobConf.Clone(), protocol.ALPNAdmin, nil)
	}
	bob, err := dialBob()
	if err != nil {
		t.Fatalf("bob's handshake before revocation: %v", err)
	}
	defer bob.Close()
	status := func(s *protocol.Session) error {
		_, err := s.Request(ctx, &protocol.AdminRequest{Verb: api.VerbClusterStatus})
		return err
	}
	if err := status(bob); err != nil {
		t.Fatalf("bob before revocation: %v", err)
	}

	if err := adm.Call(ctx, api.VerbAdminsList, api.QueryOptions{}, nil, &admins); err != nil {
		t.Fatal(err)
	}
	bobSerial := ""
	for _, a := range admins {
		if a.Name == "bob" {
			bobSerial = a.Serial
			if a.CreatedBy != "operator:admin" || a.Expires.IsZero() {
				t.Errorf("bob's record %+v", a)
			}
		}
	}
	if bobSerial == "" {
		t.Fatalf("bob not recorded: %+v", admins)
	}
	var rr api.AdminRevokeResponse
	if err := adm.Call(ctx, api.VerbAdminsRevoke, api.QueryOptions{}, api.AdminRevokeRequest{Name: "bob"}, &rr); err != nil {
		t.Fatal(err)
	}
	if len(rr.Revoked) != 1 || rr.Revoked[0] != bobSerial {
		t.Fatalf("revoked %v, want [%s]", rr.Revoked, bobSerial)
	}

	// The open session answers no more.
	if err := status(bob); wireCode(err) != protocol.CodeRevoked {
		t.Fatalf("bob's open session after revocation: %v, want a revoked error", err)
	}
	// A new handshake is refused.
	if s, err := dialBob(); err == nil {
		s.Close()
		t.Fatal("revoked admin certificate accepted at the handshake")
	} else if !protocol.HandshakeRefused(err) {
		t.Fatalf("revoked admin's handshake: %v, want a TLS refusal", err)
	}
	// The other operator is unaffected.
	if err := adm.Call(ctx, api.VerbClusterStatus, api.QueryOptions{}, nil, &api.ClusterStatus{}); err != nil {
		t.Fatalf("unrevoked admin after bob's revocation: %v", err)
	}
	if err := adm.Call(ctx, api.VerbAdminsRevoke, api.QueryOptions{}, api.AdminRevokeRequest{Name: "nobody"}, nil); wireCode(err) != protocol.CodeNotFound {
		t.Fatalf("revoking an unknown admin: %v, want not found", err)
	}
	var audit []api.AuditEntry
	if err := adm.Call(ctx, api.VerbAuditList, api.QueryOptions{}, api.AuditRequest{}, &audit); err != nil {
		t.Fatal(err)
	}
	var trail []string
	for _, a := range audit {
		trail = append(trail, a.Action+" "+a.By)
	}
	if want := []string{"admin.create fedge init", "admin.create operator:admin", "admin.revoke operator:admin"}; strings.Join(trail, ",") != strings.Join(want, ",") {
		t.Fatalf("audit %q, want %q", trail, want)
	}
}

// TestTokensListRevokeAndTTL runs on a node whose seal key lives outside
// its data dir and whose token TTL is capped at two hours.
func TestTokensListRevokeAndTTL(t *testing.T) {
	nd, adm, dir := startOne(t, coordinator.InitOptions{SealKeyOutside: true}, func(dir string, key []byte) coordinator.SecurityConfig {
		path := filepath.Join(t.TempDir(), "seal.key")
		if err := os.WriteFile(path, []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return coordinator.SecurityConfig{SealKeyFile: path, MaxTokenTTL: api.Duration(2 * time.Hour)}
	})
	if _, err := os.Stat(filepath.Join(dir, "c1", "tls", coordinator.FileSealKey)); !os.IsNotExist(err) {
		t.Fatalf("seal.key next to the CA: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	if err := adm.Call(ctx, api.VerbTokensCreate, api.QueryOptions{}, api.TokenRequest{TTL: api.Duration(3 * time.Hour)}, nil); wireCode(err) != protocol.CodeBadRequest || !strings.Contains(err.Error(), "at most 2h0m0s") {
		t.Fatalf("token TTL above the maximum: %v", err)
	}
	var tok, tok2 api.TokenResponse
	if err := adm.Call(ctx, api.VerbTokensCreate, api.QueryOptions{}, api.TokenRequest{TTL: api.Duration(2 * time.Hour), Labels: map[string]string{"region": "eu"}}, &tok); err != nil {
		t.Fatal(err)
	}
	if err := adm.Call(ctx, api.VerbTokensCreate, api.QueryOptions{}, api.TokenRequest{}, &tok2); err != nil {
		t.Fatal(err)
	}

	var list []api.Token
	if err := adm.Call(ctx, api.VerbTokensList, api.QueryOptions{}, nil, &list); err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(list)
	secret := strings.Split(tok.Token, ".")[2]
	if strings.Contains(string(raw), secret) || strings.Contains(string(raw), strings.Split(tok2.Token, ".")[2]) {
		t.Fatalf("tokens.list shows a token secret: %s", raw)
	}
	if len(list) != 2 {
		t.Fatalf("tokens %+v", list)
	}
	for _, ti := range list {
		if ti.State != api.TokenValid || len(ti.HashPrefix) != 8 || ti.CreatedBy != "operator:admin" || ti.Expires.IsZero() {
			t.Errorf("token %+v", ti)
		}
	}

	if err := adm.Call(ctx, api.VerbTokensRevoke, api.QueryOptions{}, api.IDRequest{ID: tok.ID}, nil); err != nil {
		t.Fatal(err)
	}
	enroll := func(token string) error {
		_, pin, err := identity.ParseJoinToken(token)
		if err != nil {
			return err
		}
		key, _ := identity.NewKey(rand.Reader)
		id, _ := identity.NewAgentID(rand.Reader)
		csr, _ := identity.NewCSR(key, id)
		conf, err := identity.EnrollClientConfig(pin, protocol.ALPNEnroll)
		if err != nil {
			return err
		}
		s, err := protocol.Dial(ctx, nd.Addr(), conf, protocol.ALPNEnroll, nil)
		if err != nil {
			return err
		}
		defer s.Close()
		_, err = s.Request(ctx, &protocol.EnrollRequest{Token: token, CSR: csr})
		return err
	}
	if err := enroll(tok.Token); wireCode(err) != protocol.CodeInvalidToken {
		t.Fatalf("enrolling with a revoked token: %v, want invalid token", err)
	}
	if err := enroll(tok2.Token); err != nil {
		t.Fatalf("enrolling with a live token: %v", err)
	}
	if err := adm.Call(ctx, api.VerbTokensRevoke, api.QueryOptions{}, api.IDRequest{ID: tok2.ID}, nil); wireCode(err) != protocol.CodeBadRequest {
		t.Fatalf("revoking a used token: %v", err)
	}
	if err := adm.Call(ctx, api.VerbTokensRevoke, api.QueryOptions{}, api.IDRequest{ID: "aaaaaaaa"}, nil); wireCode(err) != protocol.CodeNotFound {
		t.Fatalf("revoking an unknown token: %v", err)
	}
	if err := adm.Call(ctx, api.VerbTokensList, api.QueryOptions{}, nil, &list); err != nil {
		t.Fatal(err)
	}
	states := map[string]string{}
	for _, ti := range list {
		states[ti.ID] = ti.State
		if ti.ID == tok.ID && (ti.RevokedBy != "operator:admin" || ti.RevokedAt.IsZero()) {
			t.Errorf("revoked token %+v", ti)
		}
	}
	if states[tok.ID] != api.TokenRevoked || states[tok2.ID] != api.TokenUsed {
		t.Fatalf("token states %v", states)
	}
}

// TestDefaultMaxTokenTTL: without max_token_ttl a leader issues tokens for
// up to seven days.
func TestDefaultMaxTokenTTL(t *testing.T) {
	_, adm, _ := startOne(t, coordinator.InitOptions{}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := adm.Call(ctx, api.VerbTokensCreate, api.QueryOptions{}, api.TokenRequest{TTL: api.Duration(coordinator.DefaultMaxTokenTTL + time.Second)}, nil); wireCode(err) != protocol.CodeBadRequest {
		t.Fatalf("token TTL above 7 days: %v", err)
	}
	if err := adm.Call(ctx, api.VerbTokensCreate, api.QueryOptions{}, api.TokenRequest{TTL: api.Duration(coordinator.DefaultMaxTokenTTL)}, nil); err != nil {
		t.Fatalf("token TTL of 7 days: %v", err)
	}
}
