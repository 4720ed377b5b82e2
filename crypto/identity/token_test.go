package identity_test

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fedge/fedge/crypto/identity"
)

func TestJoinTokenLifecycle(t *testing.T) {
	ca := newCA(t, "prod", t0)
	labels := map[string]string{"site": "lyon", "gpu": "false"}
	token, rec, err := identity.NewJoinToken(rand.Reader, ca, time.Hour, labels, t0)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^fedge1\.[a-z2-7]{8}\.[a-z2-7]{32}\.[0-9a-f]{64}$`).MatchString(token) {
		t.Fatalf("token %q has the wrong form", token)
	}
	labels["site"] = "changed"
	if rec.Labels["site"] != "lyon" {
		t.Error("record shares the caller's label map")
	}
	id, pin, err := identity.ParseJoinToken(token)
	if err != nil || id != rec.ID || pin != ca.Pin() {
		t.Fatalf("ParseJoinToken = %q, %x, %v", id, pin, err)
	}
	if strings.Contains(token, hex.EncodeToString(rec.SecretHash[:])) {
		t.Error("token contains the stored hash")
	}
	tests := []struct {
		name string
		used bool
		at   time.Time
		want error
	}{
		{"fresh", false, t0, nil},
		{"just before expiry", false, t0.Add(time.Hour - time.Nanosecond), nil},
		{"at expiry", false, t0.Add(time.Hour), identity.ErrTokenExpired},
		{"used", true, t0, identity.ErrTokenUsed},
		{"used and expired", true, t0.Add(2 * time.Hour), identity.ErrTokenUsed},
	}
	for _, tt := range tests {
		r := rec
		r.Used = tt.used
		err := identity.VerifyJoinToken(r, token, tt.at)
		if (tt.want == nil) != (err == nil) || (tt.want != nil && !errors.Is(err, tt.want)) {
			t.Errorf("%s: VerifyJoinToken = %v, want %v", tt.name, err, tt.want)
		}
	}
	// Default TTL.
	_, rec2, err := identity.NewJoinToken(rand.Reader, ca, 0, nil, t0)
	if err != nil || !rec2.Expires.Equal(t0.Add(identity.DefaultTokenTTL)) || rec2.Labels != nil {
		t.Errorf("default token: expires %v labels %v err %v", rec2.Expires, rec2.Labels, err)
	}
	if rec2.ID == rec.ID {
		t.Error("two tokens share an ID")
	}
}

func TestVerifyJoinTokenRejects(t *testing.T) {
	ca := newCA(t, "prod", t0)
	token, rec, err := identity.NewJoinToken(rand.Reader, ca, time.Hour, nil, t0)
	if err != nil {
		t.Fatal(err)
	}
	other, otherRec, _ := identity.NewJoinToken(rand.Reader, ca, time.Hour, nil, t0)
	// A wrong secret is refused as invalid even when the record is used
	// or expired: without the secret nothing is learnt about the record.
	used := rec
	used.Used = true
	for _, r := range []identity.TokenRecord{rec, used} {
		if err := identity.VerifyJoinToken(r, other, t0.Add(2*time.Hour)); !errors.Is(err, identity.ErrTokenInvalid) {
			t.Errorf("other token against record: %v, want ErrTokenInvalid", err)
		}
	}
	if err := identity.VerifyJoinToken(otherRec, token, t0); !errors.Is(err, identity.ErrTokenInvalid) {
		t.Errorf("token against other record: %v", err)
	}
	// Changing any character of the ID or secret is refused; changing the
	// pin is not the coordinator's concern.
	alphabet := "abcdefghijklmnopqrstuvwxyz234567"
	pinAt := strings.LastIndexByte(token, '.')
	for i := len("fedge1."); i < pinAt; i++ {
		if token[i] == '.' {
			continue
		}
		b := []byte(token)
		b[i] = alphabet[(strings.IndexByte(alphabet, b[i])+1)%32]
		if err := identity.VerifyJoinToken(rec, string(b), t0); !errors.Is(err, identity.ErrTokenInvalid) {
			t.Fatalf("character %d changed: %v", i, err)
		}
	}
	malformed := []string{
		"",
		token[:len(token)-1],
		token + "0",
		strings.Replace(token, "fedge1", "fedge2", 1),
		strings.ToUpper(token),
		strings.Replace(token, ".", ":", 1),
		token[:pinAt] + "." + strings.Repeat("g", 64),
		token[:pinAt] + "." + strings.ToUpper(token[pinAt+1:]),
		"fedge1." + strings.Repeat("a", 9) + "." + strings.Repeat("a", 31) + "." + strings.Repeat("0", 64),
	}
	for _, m := range malformed {
		if err := identity.VerifyJoinToken(rec, m, t0); !errors.Is(err, identity.ErrTokenInvalid) {
			t.Errorf("VerifyJoinToken(%q) = %v", m, err)
		}
		if _, _, err := identity.ParseJoinToken(m); !errors.Is(err, identity.ErrTokenInvalid) {
			t.Errorf("ParseJoinToken(%q) = %v", m, err)
		}
	}
}

func TestNewJoinTokenRejects(t *testing.T) {
	ca := newCA(t, "prod", t0)
	tooMany := map[string]string{}
	for i := range identity.MaxLabels + 1 {
		tooMany[string(rune('a'+i%26))+strings.Repeat("x", i/26+1)] = "v"
	}
	for name, labels := range map[string]map[string]string{
		"empty key":     {"": "v"},
		"upper key":     {"Site": "v"},
		"space value":   {"site": "a b"},
		"long value":    {"site": strings.Repeat("v", identity.MaxLabelLen+1)},
		"slash value":   {"site": "a/b"},
		"leading slash": {"/site": "v"},
		"too many":      tooMany,
	} {
		if _, _, err := identity.NewJoinToken(rand.Reader, ca, time.Hour, labels, t0); !errors.Is(err, identity.ErrInvalidID) {
			t.Errorf("%s: %v, want ErrInvalidID", name, err)
		}
	}
	ok := map[string]string{"topology.fedge.io/zone": "eu-West_1.b", "empty": ""}
	if _, _, err := identity.NewJoinToken(rand.Reader, ca, time.Hour, ok, t0); err != nil {
		t.Errorf("valid labels refused: %v", err)
	}
	if _, _, err := identity.NewJoinToken(rand.Reader, ca, -time.Second, nil, t0); err == nil {
		t.Error("negative TTL accepted")
	}
	if _, _, err := identity.NewJoinToken(rand.Reader, nil, time.Hour, nil, t0); err == nil {
		t.Error("nil CA accepted")
	}
}

// goldenRecord is a fixed record whose encoding is pinned in testdata: the
// Raft log outlives any one build, so the format must not drift.
func goldenRecord() identity.TokenRecord {
	var h [32]byte
	for i := range h {
		h[i] = byte(i * 7)
	}
	return identity.TokenRecord{
		ID:         "abcdefgh",
		SecretHash: h,
		Expires:    time.Date(2026, 3, 2, 12, 0, 0, 123456789, time.UTC),
		Labels:     map[string]string{"zone": "eu-1", "gpu": "true", "site": "lyon"},
		Used:       true,
	}
}

func TestTokenRecordBinary(t *testing.T) {
	rec := goldenRecord()
	b, err := rec.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "token_record_v1.hex")
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
	var back identity.TokenRecord
	if err := back.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, rec) {
		t.Fatalf("round trip: %+v != %+v", back, rec)
	}

	// A real record round-trips and still verifies its token.
	ca := newCA(t, "prod", t0)
	token, fresh, _ := identity.NewJoinToken(rand.Reader, ca, time.Hour, nil, t0)
	fb, _ := fresh.MarshalBinary()
	var fr identity.TokenRecord
	if err := fr.UnmarshalBinary(fb); err != nil || identity.VerifyJoinToken(fr, token, t0) != nil {
		t.Fatalf("decoded record does not verify its token: %v", err)
	}
	sec := strings.Split(token, ".")[2]
	if bytes.Contains(fb, []byte(sec)) {
		t.Error("encoded record contains the secret")
	}

	// Non-canonical and malformed encodings are refused.
	bad := map[string][]byte{
		"empty":          nil,
		"version":        append([]byte{2}, b[1:]...),
		"truncated":      b[:len(b)-1],
		"trailing":       append(bytes.Clone(b), 0),
		"unknown flag":   setByte(b, 1+8+32+12, 3),
		"nanos too big":  setBytes(b, 1+8+32+8, []byte{0x3b, 0x9a, 0xca, 0x00}),
		"id not base32":  setByte(b, 1, '1'),
		"unsorted label": swapLabels(t, b),
	}
	for name, in := range bad {
		var r identity.TokenRecord
		if err := r.UnmarshalBinary(in); !errors.Is(err, identity.ErrMalformed) {
			t.Errorf("%s: UnmarshalBinary = %v, want ErrMalformed", name, err)
		}
	}
	if _, err := (identity.TokenRecord{ID: "short"}).MarshalBinary(); err == nil {
		t.Error("MarshalBinary accepted a bad ID")
	}
}

func setByte(b []byte, i int, v byte) []byte { return setBytes(b, i, []byte{v}) }

func setBytes(b []byte, i int, v []byte) []byte {
	c := bytes.Clone(b)
	copy(c[i:], v)
	return c
}

// swapLabels re-encodes the golden record's first two labels in reverse
// order ("gpu" then "site" becomes "site" then "gpu").
func swapLabels(t *testing.T, b []byte) []byte {
	t.Helper()
	at := 1 + 8 + 32 + 12 + 2
	first := []byte("\x03gpu\x04true")
	second := []byte("\x04site\x04lyon")
	if !bytes.HasPrefix(b[at:], append(bytes.Clone(first), second...)) {
		t.Fatalf("golden labels not where expected: %x", b[at:])
	}
	c := bytes.Clone(b[:at])
	c = append(c, second...)
	c = append(c, first...)
	return append(c, b[at+len(first)+len(second):]...)
}
