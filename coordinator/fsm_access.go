package coordinator

import (
	"fmt"
	"time"
)

// Credential records: admin certificates and join-token revocations. Each
// apply appends its audit record in the same entry.

type adminCertCmd struct {
	Serial string `json:"serial"`
	Name   string `json:"name"`
	// Entries written before admin records lack these.
	At      time.Time `json:"at,omitempty"`
	Expires time.Time `json:"expires,omitempty"`
	By      string    `json:"by,omitempty"`
}

// validSerial reports whether s is a certificate serial as
// big.Int.Text(16) writes it: 1 to 40 lower-case hex digits, no leading
// zero.
func validSerial(s string) bool {
	if len(s) == 0 || len(s) > 40 || s[0] == '0' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func applyAdminCert(s *State, hdr []byte) any {
	var c adminCertCmd
	if err := decodeHdr(hdr, &c); err != nil {
		return err
	}
	if !validSerial(c.Serial) || c.Name == "" {
		return fmt.Errorf("%w: admin cert without serial or name", ErrBadEntry)
	}
	if _, ok := s.Admins[c.Serial]; ok {
		return fmt.Errorf("%w: admin certificate %s", ErrExists, c.Serial)
	}
	s.Admins[c.Serial] = &AdminRecord{Serial: c.Serial, Name: c.Name, CreatedAt: c.At, CreatedBy: c.By, Expires: c.Expires}
	s.audit(AuditRecord{At: c.At, By: c.By, Action: AuditAdminCreate, Target: c.Serial, Detail: "name " + c.Name})
	return nil
}

type adminRevokeCmd struct {
	// Serial revokes one certificate, recorded or not; else Name revokes
	// every recorded certificate of that operator.
	Serial string    `json:"serial,omitempty"`
	Name   string    `json:"name,omitempty"`
	At     time.Time `json:"at"`
	By     string    `json:"by,omitempty"`
}

// applyAdminRevoke revokes admin certificates and returns the serials it
// revoked now ([]string; empty when all were revoked already).
func applyAdminRevoke(s *State, hdr []byte) any {
	var c adminRevokeCmd
	if err := decodeHdr(hdr, &c); err != nil {
		return err
	}
	var targets []*AdminRecord
	switch {
	case c.Serial != "" && c.Name == "":
		if !validSerial(c.Serial) {
			return fmt.Errorf("%w: admin serial %q is not lower-case hex", ErrBadEntry, c.Serial)
		}
		a, ok := s.Admins[c.Serial]
		if !ok {
			a = &AdminRecord{Serial: c.Serial, Unrecorded: true}
			s.Admins[c.Serial] = a
		}
		targets = append(targets, a)
	case c.Name != "" && c.Serial == "":
		for _, serial := range sortedKeys(s.Admins) {
			if a := s.Admins[serial]; a.Name == c.Name {
				targets = append(targets, a)
			}
		}
		if len(targets) == 0 {
			return fmt.Errorf("%w: admin %s", ErrNotFound, c.Name)
		}
	default:
		return fmt.Errorf("%w: admin revoke needs a serial or a name", ErrBadEntry)
	}
	revoked := []string{}
	for _, a := range targets {
		if a.Revoked {
			continue
		}
		a.Revoked, a.RevokedAt, a.RevokedBy = true, c.At, c.By
		s.Revoked[a.Serial] = c.At
		revoked = append(revoked, a.Serial)
		detail := "name " + a.Name
		if a.Unrecorded {
			detail = "unrecorded certificate"
		}
		s.audit(AuditRecord{At: c.At, By: c.By, Action: AuditAdminRevoke, Target: a.Serial, Detail: detail})
	}
	return revoked
}

type tokenRevokeCmd struct {
	ID string    `json:"id"`
	At time.Time `json:"at"`
	By string    `json:"by,omitempty"`
}

func applyTokenRevoke(s *State, hdr []byte) any {
	var c tokenRevokeCmd
	if err := decodeHdr(hdr, &c); err != nil {
		return err
	}
	t, ok := s.Tokens[c.ID]
	if !ok {
		return fmt.Errorf("%w: token %s", ErrNotFound, c.ID)
	}
	if t.Used {
		return fmt.Errorf("%w: token %s was already used by agent %s (revoke the agent instead)", ErrConflict, c.ID, t.UsedBy)
	}
	if t.Revoked {
		return nil
	}
	t.Revoked, t.RevokedAt, t.RevokedBy = true, c.At, c.By
	s.audit(AuditRecord{At: c.At, By: c.By, Action: AuditTokenRevoke, Target: c.ID})
	return nil
}

// migrateAdmins moves the admin serials of an older snapshot into admin
// records.
func migrateAdmins(s *State) {
	for serial, name := range s.AdminSerials {
		if _, ok := s.Admins[serial]; !ok {
			s.Admins[serial] = &AdminRecord{Serial: serial, Name: name}
		}
	}
	s.AdminSerials = map[string]string{}
}
