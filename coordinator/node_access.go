package coordinator

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/crypto/identity"
	"github.com/fedge/fedge/protocol"
)

// Credential verbs: join tokens and operator certificates. Who may do
// what: any operator whose certificate is valid and not revoked may
// create and revoke join tokens, issue admin certificates (admin.cert) and
// revoke them. Every one of these actions is committed through Raft with
// an audit record naming the operator (audit.list), and every issued
// admin certificate is recorded, so it can be listed and revoked.

// createToken issues a join token for who, refusing a TTL above the
// configured maximum. No TTL means identity.DefaultTokenTTL (24 hours), or
// the maximum if that is shorter.
func (n *Node) apiTokensCreate(c adminCall, r api.TokenRequest) (*api.TokenResponse, error) {
	ctx, who, now := c.ctx, c.who, c.now
	if err := identity.ValidateLabels(r.Labels); err != nil {
		return nil, err
	}
	ttl, maxTTL := time.Duration(r.TTL), n.cfg.maxTokenTTL()
	if ttl == 0 {
		ttl = min(identity.DefaultTokenTTL, maxTTL)
	}
	if ttl > maxTTL {
		return nil, fmt.Errorf("%w: a token for %v asked, the cluster allows at most %v (max_token_ttl in the coordinator config)", ErrTokenTTL, ttl, maxTTL)
	}
	if ttl < 0 {
		return nil, fmt.Errorf("tokens.create: negative TTL %v", ttl)
	}
	ca, err := n.openCA()
	if err != nil {
		return nil, err
	}
	tok, rec, err := identity.NewJoinToken(rand.Reader, ca, ttl, r.Labels, now)
	if err != nil {
		return nil, err
	}
	b, err := rec.MarshalBinary()
	if err != nil {
		return nil, err
	}
	if _, err := n.rep.apply(ctx, cmdTokenCreate, TokenRecord{ID: rec.ID, Record: b, Expiry: rec.Expires, Labels: r.Labels, CreatedAt: now, CreatedBy: who}, nil); err != nil {
		return nil, err
	}
	return &api.TokenResponse{Token: tok, ID: rec.ID, Expires: rec.Expires}, nil
}

// apiTokensList lists the tokens the state holds, without their secrets.
func (n *Node) apiTokensList(c adminCall, _ none) ([]api.Token, error) {
	now := c.now
	out := []api.Token{}
	n.fsm.Read(func(s *State) {
		for _, id := range sortedKeys(s.Tokens) {
			t := s.Tokens[id]
			info := api.Token{
				ID: t.ID, Labels: t.Labels, CreatedAt: t.CreatedAt, CreatedBy: t.CreatedBy, Expires: t.Expiry,
				Used: t.Used, UsedBy: t.UsedBy, Revoked: t.Revoked, RevokedAt: t.RevokedAt, RevokedBy: t.RevokedBy,
			}
			var rec identity.TokenRecord
			if err := rec.UnmarshalBinary(t.Record); err == nil {
				info.HashPrefix = hex.EncodeToString(rec.SecretHash[:4])
			}
			switch {
			case t.Revoked:
				info.State = api.TokenRevoked
			case t.Used:
				info.State = api.TokenUsed
			case !now.Before(t.Expiry):
				info.State = api.TokenExpired
			default:
				info.State = api.TokenValid
			}
			out = append(out, info)
		}
	})
	return out, nil
}

// issueAdmin has the CA sign an operator certificate for r's key and
// records it, with who asked for it.
func (n *Node) apiAdminCert(c adminCall, r api.AdminCertRequest) (*api.AdminCertResponse, error) {
	ctx, who, now := c.ctx, c.who, c.now
	if len(r.PublicKey) != ed25519.PublicKeySize {
		return nil, errors.New("admin.cert: public_key must be 32 bytes of Ed25519")
	}
	ca, err := n.openCA()
	if err != nil {
		return nil, err
	}
	der, err := ca.IssueAdmin(ed25519.PublicKey(r.PublicKey), r.Name, AdminCertTTL, now)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	rec := adminCertCmd{Serial: cert.SerialNumber.Text(16), Name: r.Name, At: now, Expires: cert.NotAfter.UTC(), By: who}
	if _, err := n.rep.apply(ctx, cmdAdminCert, rec, nil); err != nil {
		return nil, err
	}
	return &api.AdminCertResponse{Cert: der, CACert: ca.Certificate().Raw}, nil
}

// apiAdminsList lists the recorded operator certificates.
func (n *Node) apiAdminsList(adminCall, none) ([]api.Admin, error) {
	out := []api.Admin{}
	n.fsm.Read(func(s *State) {
		for _, serial := range sortedKeys(s.Admins) {
			a := s.Admins[serial]
			out = append(out, api.Admin{
				Serial: a.Serial, Name: a.Name, CreatedAt: a.CreatedAt, CreatedBy: a.CreatedBy, Expires: a.Expires,
				Unrecorded: a.Unrecorded, Revoked: a.Revoked, RevokedAt: a.RevokedAt, RevokedBy: a.RevokedBy,
			})
		}
	})
	return out, nil
}

// revokeAdmin revokes operator certificates by serial or name.
func (n *Node) apiAdminsRevoke(c adminCall, r api.AdminRevokeRequest) (*api.AdminRevokeResponse, error) {
	ctx, who, now := c.ctx, c.who, c.now
	if (r.Name == "") == (r.Serial == "") {
		return nil, errors.New("admins.revoke: give a name or a serial, not both")
	}
	if r.Serial != "" && !validSerial(r.Serial) {
		return nil, fmt.Errorf("admins.revoke: serial %q is not lower-case hex without leading zeros (as admins list and admin-cert print it)", r.Serial)
	}
	res, err := n.rep.apply(ctx, cmdAdminRevoke, adminRevokeCmd{Name: r.Name, Serial: r.Serial, At: now, By: who}, nil)
	if err != nil {
		return nil, err
	}
	serials, _ := res.([]string)
	return &api.AdminRevokeResponse{Revoked: serials}, nil
}

// apiAuditList returns the last r.Limit audit records (all with 0).
func (n *Node) apiAuditList(_ adminCall, r api.AuditRequest) ([]api.AuditEntry, error) {
	limit := r.Limit
	out := []api.AuditEntry{}
	n.fsm.Read(func(s *State) {
		recs := s.Audit
		if limit > 0 && len(recs) > limit {
			recs = recs[len(recs)-limit:]
		}
		for _, a := range recs {
			out = append(out, api.AuditEntry(a))
		}
	})
	return out, nil
}

// adminRevoked reports whether the operator certificate of session s has
// been revoked since its handshake.
func (n *Node) adminRevoked(s *protocol.Session) bool {
	cs := s.TLS()
	if len(cs.PeerCertificates) == 0 {
		return false
	}
	leaf := cs.PeerCertificates[0]
	id, err := identity.CertIdentity(leaf)
	if err != nil {
		return false
	}
	return n.revoked(leaf.SerialNumber, id)
}
