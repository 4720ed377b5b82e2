package coordinator

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

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
func (n *Node) createToken(ctx context.Context, who string, r TokenRequest, now time.Time) (*TokenResponse, error) {
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
	return &TokenResponse{Token: tok, ID: rec.ID, Expires: rec.Expires}, nil
}

// tokenInfos lists the tokens the state holds, without their secrets.
func (n *Node) tokenInfos(now time.Time) []TokenInfo {
	out := []TokenInfo{}
	n.fsm.Read(func(s *State) {
		for _, id := range sortedKeys(s.Tokens) {
			t := s.Tokens[id]
			info := TokenInfo{
				ID: t.ID, Labels: t.Labels, CreatedAt: t.CreatedAt, CreatedBy: t.CreatedBy, Expires: t.Expiry,
				Used: t.Used, UsedBy: t.UsedBy, Revoked: t.Revoked, RevokedAt: t.RevokedAt, RevokedBy: t.RevokedBy,
			}
			var rec identity.TokenRecord
			if err := rec.UnmarshalBinary(t.Record); err == nil {
				info.HashPrefix = hex.EncodeToString(rec.SecretHash[:4])
			}
			switch {
			case t.Revoked:
				info.State = TokenRevoked
			case t.Used:
				info.State = TokenUsed
			case !now.Before(t.Expiry):
				info.State = TokenExpired
			default:
				info.State = TokenValid
			}
			out = append(out, info)
		}
	})
	return out
}

// issueAdmin has the CA sign an operator certificate for r's key and
// records it, with who asked for it.
func (n *Node) issueAdmin(ctx context.Context, who string, r AdminCertRequest, now time.Time) (*AdminCertResponse, error) {
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
	c := adminCertCmd{Serial: cert.SerialNumber.Text(16), Name: r.Name, At: now, Expires: cert.NotAfter.UTC(), By: who}
	if _, err := n.rep.apply(ctx, cmdAdminCert, c, nil); err != nil {
		return nil, err
	}
	return &AdminCertResponse{Cert: der, CACert: ca.Certificate().Raw}, nil
}

// adminInfos lists the recorded operator certificates.
func (n *Node) adminInfos() []AdminInfo {
	out := []AdminInfo{}
	n.fsm.Read(func(s *State) {
		for _, serial := range sortedKeys(s.Admins) {
			a := s.Admins[serial]
			out = append(out, AdminInfo{
				Serial: a.Serial, Name: a.Name, CreatedAt: a.CreatedAt, CreatedBy: a.CreatedBy, Expires: a.Expires,
				Unrecorded: a.Unrecorded, Revoked: a.Revoked, RevokedAt: a.RevokedAt, RevokedBy: a.RevokedBy,
			})
		}
	})
	return out
}

// revokeAdmin revokes operator certificates by serial or name.
func (n *Node) revokeAdmin(ctx context.Context, who string, r AdminRevokeRequest, now time.Time) (*AdminRevokeResponse, error) {
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
	return &AdminRevokeResponse{Revoked: serials}, nil
}

// auditEntries returns the last limit audit records (all with limit 0).
func (n *Node) auditEntries(limit int) []AuditEntry {
	out := []AuditEntry{}
	n.fsm.Read(func(s *State) {
		recs := s.Audit
		if limit > 0 && len(recs) > limit {
			recs = recs[len(recs)-limit:]
		}
		for _, a := range recs {
			out = append(out, AuditEntry(a))
		}
	})
	return out
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
