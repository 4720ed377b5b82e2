package identity_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedge/fedge/crypto/identity"
)

func TestRevocationList(t *testing.T) {
	var l identity.RevocationList
	alice := identity.Identity{Role: identity.RoleAdmin, ID: "alice"}
	agent := identity.Identity{Role: identity.RoleAgent, ID: "ag-one"}
	s1, s2 := big.NewInt(1000), new(big.Int).Lsh(big.NewInt(1), 150)
	if l.Revoked(s1, agent) {
		t.Fatal("empty list revokes")
	}
	if err := l.RevokeSerial(s1, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := l.RevokeSerial(s2, t0.Add(48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := l.RevokeIdentity(alice); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		serial *big.Int
		id     identity.Identity
		want   bool
	}{
		{s1, agent, true},
		{big.NewInt(1000), agent, true},
		{s2, agent, true},
		{big.NewInt(1001), agent, false},
		{big.NewInt(1001), alice, true},
		{nil, alice, true},
		{nil, agent, false},
		{big.NewInt(-1000), agent, false},
		{new(big.Int).Lsh(big.NewInt(1), 200), agent, false},
		{big.NewInt(7), identity.Identity{Role: identity.RoleAgent, ID: "alice"}, false},
	}
	for _, tt := range tests {
		if got := l.Revoked(tt.serial, tt.id); got != tt.want {
			t.Errorf("Revoked(%v, %v) = %v, want %v", tt.serial, tt.id, got, tt.want)
		}
	}
	if s, i := l.Len(); s != 2 || i != 1 {
		t.Errorf("Len = %d, %d", s, i)
	}
	for _, bad := range []*big.Int{nil, big.NewInt(0), big.NewInt(-5), new(big.Int).Lsh(big.NewInt(1), 160)} {
		if err := l.RevokeSerial(bad, t0); !errors.Is(err, identity.ErrMalformed) {
			t.Errorf("RevokeSerial(%v) = %v", bad, err)
		}
	}
	if err := l.RevokeIdentity(identity.Identity{Role: identity.RoleAgent, ID: "Bad"}); !errors.Is(err, identity.ErrInvalidID) {
		t.Errorf("RevokeIdentity(bad) = %v", err)
	}
	if n := l.Prune(t0.Add(2 * time.Hour)); n != 1 || l.Revoked(s1, agent) || !l.Revoked(s2, agent) {
		t.Errorf("Prune dropped %d; s1 revoked=%v s2 revoked=%v", n, l.Revoked(s1, agent), l.Revoked(s2, agent))
	}
	if !l.UnrevokeIdentity(alice) || l.Revoked(nil, alice) || l.UnrevokeIdentity(alice) {
		t.Error("UnrevokeIdentity did not lift the revocation exactly once")
	}
	// Revoking again keeps the later expiry.
	_ = l.RevokeSerial(s1, t0.Add(10*time.Hour))
	_ = l.RevokeSerial(s1, t0.Add(time.Hour))
	if l.Prune(t0.Add(5 * time.Hour)); !l.Revoked(s1, agent) {
		t.Error("second RevokeSerial shortened the expiry")
	}
	var r identity.Revoker = identity.RevokerFunc(func(s *big.Int, id identity.Identity) bool { return id == agent })
	if !r.Revoked(nil, agent) || r.Revoked(nil, alice) {
		t.Error("RevokerFunc does not call its function")
	}
}

func goldenList(t *testing.T) *identity.RevocationList {
	t.Helper()
	var l identity.RevocationList
	for i, s := range []int64{300, 5, 1 << 40, 256} {
		if err := l.RevokeSerial(big.NewInt(s), time.Unix(1_800_000_000+int64(i), 0)); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []string{"fedge://agent/ag-b", "fedge://admin/alice", "fedge://agent/ag-a", "fedge://coordinator/node-2"} {
		id, err := identity.ParseIdentity(s)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.RevokeIdentity(id); err != nil {
			t.Fatal(err)
		}
	}
	return &l
}

func TestRevocationListBinary(t *testing.T) {
	l := goldenList(t)
	b, err := l.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "revocation_list_v1.hex")
	if *update {
		if err := os.WriteFile(golden, []byte(hex.EncodeToString(b)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(b); got != strings.TrimSpace(string(want)) {
		t.Fatalf("encoding drifted from %s:\n got %s\nwant %s", golden, got, want)
	}
	for range 5 { // map order must not leak into the encoding
		again, _ := goldenList(t).MarshalBinary()
		if !bytes.Equal(again, b) {
			t.Fatal("equal lists encode differently")
		}
	}
	var back identity.RevocationList
	_ = back.RevokeIdentity(identity.Identity{Role: identity.RoleAgent, ID: "stale"})
	if err := back.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if back.Revoked(nil, identity.Identity{Role: identity.RoleAgent, ID: "stale"}) {
		t.Error("UnmarshalBinary kept an old entry")
	}
	if s, i := back.Len(); s != 4 || i != 4 || !back.Revoked(big.NewInt(1<<40), identity.Identity{}) {
		t.Errorf("decoded list: %d serials, %d identities", s, i)
	}
	b2, _ := back.MarshalBinary()
	if !bytes.Equal(b, b2) {
		t.Error("re-encoding differs")
	}

	// Empty list.
	var empty identity.RevocationList
	eb, _ := empty.MarshalBinary()
	if err := back.UnmarshalBinary(eb); err != nil || func() bool { s, i := back.Len(); return s+i != 0 }() {
		t.Errorf("empty round trip: %v", err)
	}

	// Serial entries start at 5: count(4) version(1). First serial is 5
	// (len 1), second 256 (len 2).
	bad := map[string][]byte{
		"empty":           nil,
		"version":         setByte(b, 0, 9),
		"truncated":       b[:len(b)-1],
		"trailing":        append(bytes.Clone(b), 0),
		"huge count":      setBytes(b, 1, []byte{0xff, 0xff, 0xff, 0xff}),
		"zero-length":     setByte(b, 5, 0),
		"leading zero":    setBytes(b, 5+10, []byte{2, 0, 1}),
		"unsorted serial": {1, 0, 0, 0, 2, 1, 9, 0, 0, 0, 0, 0, 0, 0, 0, 1, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		"duplicate ident": {1, 0, 0, 0, 0, 0, 0, 0, 2, 1, 1, 'a', 1, 1, 'a'},
		"bad role":        setByte(b, len(b)-len("alice")-2, 9),
		"bad ident":       setByte(b, len(b)-1, 'A'),
	}
	for name, in := range bad {
		var r identity.RevocationList
		if err := r.UnmarshalBinary(in); !errors.Is(err, identity.ErrMalformed) {
			t.Errorf("%s: UnmarshalBinary = %v, want ErrMalformed", name, err)
		}
	}
	// A failed decode leaves the list unchanged.
	if err := back.UnmarshalBinary([]byte{1}); err == nil {
		t.Fatal("short input accepted")
	}
}

// TestRevocationListConcurrent reads the list from many goroutines while
// it changes; run with -race.
func TestRevocationListConcurrent(t *testing.T) {
	var l identity.RevocationList
	snap, _ := goldenList(t).MarshalBinary()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := identity.Identity{Role: identity.RoleAgent, ID: "ag-a"}
			for {
				select {
				case <-stop:
					return
				default:
					l.Revoked(big.NewInt(5), id)
					l.Len()
				}
			}
		}()
	}
	for i := range 200 {
		_ = l.RevokeSerial(big.NewInt(int64(i+1)), t0)
		_ = l.RevokeIdentity(identity.Identity{Role: identity.RoleAgent, ID: "ag-a"})
		l.UnrevokeIdentity(identity.Identity{Role: identity.RoleAgent, ID: "ag-a"})
		if i%50 == 0 {
			if err := l.UnmarshalBinary(snap); err != nil {
				t.Error(err)
			}
			if _, err := l.MarshalBinary(); err != nil {
				t.Error(err)
			}
			l.Prune(t0.Add(time.Hour))
		}
	}
	close(stop)
	wg.Wait()
	if s, _ := l.Len(); s == 0 {
		t.Error("no serials after the writes")
	}
}
