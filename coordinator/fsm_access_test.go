package coordinator

import (
	"bytes"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"
)

// auditActions lists the trail as "action target by".
func auditActions(s *State) []string {
	var out []string
	for _, a := range s.Audit {
		out = append(out, a.Action+" "+a.Target+" "+a.By)
	}
	return out
}

func TestFSMTokenRevoke(t *testing.T) {
	h := newHarness(t)
	h.ok(cmdBootstrap, bootstrapCmd{ClusterName: "c1", CA: []byte("sealed-ca")}, nil)
	h.ok(cmdTokenCreate, TokenRecord{ID: "tok1", Record: []byte{1}, Expiry: t0.Add(time.Hour), CreatedAt: t0, CreatedBy: "operator:admin"}, nil)
	h.ok(cmdTokenCreate, TokenRecord{ID: "tok2", Record: []byte{2}, Expiry: t0.Add(time.Hour), CreatedAt: t0, CreatedBy: "operator:admin"}, nil)
	h.ok(cmdTokenRevoke, tokenRevokeCmd{ID: "tok1", At: t0.Add(time.Minute), By: "operator:bob"}, nil)
	// Revoking twice is harmless and audited once.
	h.ok(cmdTokenRevoke, tokenRevokeCmd{ID: "tok1", At: t0.Add(2 * time.Minute), By: "operator:bob"}, nil)

	enroll := func(tok, agent string) any {
		return h.apply(cmdAgentEnroll, enrollCmd{TokenID: tok, Agent: AgentRecord{ID: agent, CertSerial: "s-" + agent, EnrolledAt: t0.Add(3 * time.Minute)}}, nil)
	}
	if err, _ := enroll("tok1", "ag-1").(error); !errors.Is(err, ErrTokenRevoked) {
		t.Fatalf("enroll with a revoked token: %v, want ErrTokenRevoked", err)
	}
	if err, _ := enroll("tok2", "ag-2").(error); err != nil {
		t.Fatalf("enroll with a live token: %v", err)
	}
	if err, _ := h.apply(cmdTokenRevoke, tokenRevokeCmd{ID: "tok2", At: t0}, nil).(error); !errors.Is(err, ErrConflict) {
		t.Fatalf("revoking a used token: %v, want ErrConflict", err)
	}
	if err, _ := h.apply(cmdTokenRevoke, tokenRevokeCmd{ID: "nope", At: t0}, nil).(error); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoking an unknown token: %v, want ErrNotFound", err)
	}
	h.f.Read(func(s *State) {
		tok := s.Tokens["tok1"]
		if !tok.Revoked || tok.RevokedBy != "operator:bob" || !tok.RevokedAt.Equal(t0.Add(time.Minute)) || tok.Used {
			t.Errorf("tok1 = %+v", tok)
		}
		if _, ok := s.Agents["ag-1"]; ok {
			t.Error("an agent enrolled with a revoked token")
		}
		want := []string{"token.create tok1 operator:admin", "token.create tok2 operator:admin", "token.revoke tok1 operator:bob"}
		if got := auditActions(s); !slices.Equal(got, want) {
			t.Errorf("audit %q, want %q", got, want)
		}
	})
}

func TestFSMAdminRecords(t *testing.T) {
	h := newHarness(t)
	h.ok(cmdBootstrap, bootstrapCmd{ClusterName: "c1", CA: []byte("sealed-ca"), Admins: []AdminRecord{
		{Serial: "a1", Name: "admin", CreatedAt: t0, CreatedBy: "fedge init", Expires: t0.Add(AdminCertTTL)},
	}}, nil)
	h.ok(cmdAdminCert, adminCertCmd{Serial: "b2", Name: "bob", At: t0, Expires: t0.Add(time.Hour), By: "operator:admin"}, nil)
	h.ok(cmdAdminCert, adminCertCmd{Serial: "b3", Name: "bob", At: t0, By: "operator:admin"}, nil)
	// An entry from before admin records (no time, no author) still applies.
	h.ok(cmdAdminCert, adminCertCmd{Serial: "c4", Name: "carol"}, nil)

	rejects := []struct {
		name string
		c    cmdType
		hdr  any
		want error
	}{
		{"duplicate serial", cmdAdminCert, adminCertCmd{Serial: "b2", Name: "eve"}, ErrExists},
		{"serial not hex", cmdAdminCert, adminCertCmd{Serial: "XYZ", Name: "eve"}, ErrBadEntry},
		{"serial with a leading zero", cmdAdminRevoke, adminRevokeCmd{Serial: "0b2", At: t0}, ErrBadEntry},
		{"serial and name", cmdAdminRevoke, adminRevokeCmd{Serial: "b2", Name: "bob", At: t0}, ErrBadEntry},
		{"neither", cmdAdminRevoke, adminRevokeCmd{At: t0}, ErrBadEntry},
		{"unknown name", cmdAdminRevoke, adminRevokeCmd{Name: "nobody", At: t0}, ErrNotFound},
		{"garbage header", cmdAdminRevoke, []int{1}, ErrBadEntry},
	}
	for _, tt := range rejects {
		if err, _ := h.apply(tt.c, tt.hdr, nil).(error); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}

	at := t0.Add(time.Hour)
	if got := h.ok(cmdAdminRevoke, adminRevokeCmd{Name: "bob", At: at, By: "operator:admin"}, nil); !reflect.DeepEqual(got, []string{"b2", "b3"}) {
		t.Fatalf("revoke bob = %v, want both of bob's serials", got)
	}
	if got := h.ok(cmdAdminRevoke, adminRevokeCmd{Name: "bob", At: at}, nil); !reflect.DeepEqual(got, []string{}) {
		t.Fatalf("revoke bob again = %v, want none", got)
	}
	// A certificate the cluster never recorded is revoked by serial.
	if got := h.ok(cmdAdminRevoke, adminRevokeCmd{Serial: "ff01", At: at, By: "operator:admin"}, nil); !reflect.DeepEqual(got, []string{"ff01"}) {
		t.Fatalf("revoke unrecorded serial = %v", got)
	}
	h.f.Read(func(s *State) {
		for _, serial := range []string{"b2", "b3", "ff01"} {
			if _, ok := s.Revoked[serial]; !ok || !s.Admins[serial].Revoked {
				t.Errorf("serial %s not revoked: %+v", serial, s.Admins[serial])
			}
		}
		for _, serial := range []string{"a1", "c4"} {
			if _, ok := s.Revoked[serial]; ok || s.Admins[serial].Revoked {
				t.Errorf("serial %s revoked", serial)
			}
		}
		if a := s.Admins["a1"]; a.Name != "admin" || a.CreatedBy != "fedge init" {
			t.Errorf("init admin %+v", a)
		}
		if a := s.Admins["ff01"]; !a.Unrecorded || a.RevokedBy != "operator:admin" {
			t.Errorf("unrecorded admin %+v", a)
		}
		want := []string{
			"admin.create a1 fedge init", "admin.create b2 operator:admin", "admin.create b3 operator:admin", "admin.create c4 ",
			"admin.revoke b2 operator:admin", "admin.revoke b3 operator:admin", "admin.revoke ff01 operator:admin",
		}
		if got := auditActions(s); !slices.Equal(got, want) {
			t.Errorf("audit %q\nwant %q", got, want)
		}
	})
}

// TestSnapshotKeepsCredentialRecords: admin records, token revocations and
// the audit trail survive a snapshot, deterministically.
func TestSnapshotKeepsCredentialRecords(t *testing.T) {
	build := func() *fsmHarness {
		h := newHarness(t)
		populate(h)
		h.ok(cmdTokenCreate, TokenRecord{ID: "tok9", Record: []byte{9}, Expiry: t0.Add(time.Hour), CreatedAt: t0, CreatedBy: "operator:admin"}, nil)
		h.ok(cmdTokenRevoke, tokenRevokeCmd{ID: "tok9", At: t0, By: "operator:admin"}, nil)
		h.ok(cmdAdminCert, adminCertCmd{Serial: "b2", Name: "bob", At: t0, By: "operator:admin"}, nil)
		h.ok(cmdAdminRevoke, adminRevokeCmd{Name: "bob", At: t0, By: "operator:admin"}, nil)
		return h
	}
	a, b := build(), build()
	sa := snapshotBytes(t, a.f)
	if !bytes.Equal(sa, snapshotBytes(t, b.f)) {
		t.Fatal("two FSMs fed the same log differ")
	}
	r := NewFSM(nil)
	if err := r.Restore(nopCloser{bytes.NewReader(sa)}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(snapshotBytes(t, r), sa) {
		t.Fatal("restored state differs")
	}
	r.Read(func(s *State) {
		if !s.Tokens["tok9"].Revoked || !s.Admins["b2"].Revoked || len(s.Audit) != 5 { // populate creates a token too
			t.Fatalf("restored token %+v admin %+v audit %d", s.Tokens["tok9"], s.Admins["b2"], len(s.Audit))
		}
		if _, ok := s.Revoked["b2"]; !ok {
			t.Fatal("restored revocation list lacks bob's serial")
		}
	})
}

// TestSnapshotMigratesAdminSerials restores a snapshot from before admin
// records (admin_serials only, in the version-1 layout): the admins become
// records that can be listed and revoked.
func TestSnapshotMigratesAdminSerials(t *testing.T) {
	old := newHarness(t)
	populate(old)
	st := old.f.state.clone()
	st.Admins, st.Audit = nil, nil
	st.AdminSerials = map[string]string{"ab12": "alice"}
	var buf bytes.Buffer
	if err := writeSnapshotV1(&buf, st, old.f.blobs); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(buf.Bytes(), []byte(`"admins"`)) {
		t.Fatal("test setup: the old snapshot has admin records")
	}
	f := NewFSM(nil)
	if err := f.Restore(nopCloser{bytes.NewReader(buf.Bytes())}); err != nil {
		t.Fatal(err)
	}
	h := &fsmHarness{t: t, f: f, index: f.LastApplied()}
	if got := h.ok(cmdAdminRevoke, adminRevokeCmd{Name: "alice", At: t0}, nil); !reflect.DeepEqual(got, []string{"ab12"}) {
		t.Fatalf("revoke migrated admin = %v", got)
	}
	f.Read(func(s *State) {
		if len(s.AdminSerials) != 0 || s.Admins["ab12"].Name != "alice" {
			t.Fatalf("admin_serials %v admins %+v", s.AdminSerials, s.Admins)
		}
	})
}

func TestAuditIsBounded(t *testing.T) {
	s := newState()
	for i := 0; i < 3*KeepAudit; i++ {
		s.audit(AuditRecord{At: t0.Add(time.Duration(i) * time.Second), Action: AuditTokenCreate})
		if len(s.Audit) > KeepAudit+KeepAudit/10 {
			t.Fatalf("audit grew to %d records", len(s.Audit))
		}
	}
	if last := s.Audit[len(s.Audit)-1].At; !last.Equal(t0.Add(time.Duration(3*KeepAudit-1) * time.Second)) {
		t.Fatalf("newest record %v lost", last)
	}
	if len(s.Audit) < KeepAudit {
		t.Fatalf("kept %d records, want at least %d", len(s.Audit), KeepAudit)
	}
}
