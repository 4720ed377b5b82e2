package identity

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// Join tokens.
//
// A token string is "fedge1.<id>.<secret>.<pin>": id is 8 and secret 32
// characters of lower-case unpadded base32 (40 and 160 random bits), pin
// the 64 lower-case hex digits of the CA pin. The coordinator stores only a
// TokenRecord, which holds a SHA-256 of the secret; the agent uses the pin
// to authenticate the coordinator before it has any certificate.
const (
	tokenPrefix      = "fedge1"
	tokenIDBytes     = 5
	tokenSecretBytes = 20
	tokenIDLen       = 8  // base32 of tokenIDBytes
	tokenSecretLen   = 32 // base32 of tokenSecretBytes
	tokenLen         = len(tokenPrefix) + 1 + tokenIDLen + 1 + tokenSecretLen + 1 + 64
	// tokenHashDomain separates token hashes from any other SHA-256 use.
	tokenHashDomain = "fedge/identity/join-token/v1\x00"
)

// DefaultTokenTTL is the lifetime of a join token when the caller passes
// a zero TTL.
const DefaultTokenTTL = 24 * time.Hour

// TokenRecord is what the coordinator FSM stores for a join token: never
// the secret, only its hash. Encode it with MarshalBinary for the Raft log.
type TokenRecord struct {
	// ID names the token; it is not secret.
	ID string
	// SecretHash is SHA-256 over a domain string, the ID and the secret.
	SecretHash [32]byte
	// Expires is the instant from which the token is refused.
	Expires time.Time
	// Labels are given to the agent that enrolls with the token.
	Labels map[string]string
	// Used is set by the coordinator once an agent enrolled with the token.
	Used bool
}

// NewJoinToken creates a one-time join token valid for ttl from now
// (DefaultTokenTTL if zero), with optional labels for the agent that will
// use it. It returns the token string for the operator and the record for
// the coordinator's state. The ID and secret are read from rand.
func NewJoinToken(rand io.Reader, ca *CA, ttl time.Duration, labels map[string]string, now time.Time) (string, TokenRecord, error) {
	if ca == nil {
		return "", TokenRecord{}, fmt.Errorf("identity.NewJoinToken: nil CA")
	}
	if ttl < 0 {
		return "", TokenRecord{}, fmt.Errorf("identity.NewJoinToken: negative TTL %v", ttl)
	}
	if ttl == 0 {
		ttl = DefaultTokenTTL
	}
	if err := ValidateLabels(labels); err != nil {
		return "", TokenRecord{}, fmt.Errorf("identity.NewJoinToken: %w", err)
	}
	var b [tokenIDBytes + tokenSecretBytes]byte
	if _, err := io.ReadFull(rand, b[:]); err != nil {
		return "", TokenRecord{}, fmt.Errorf("identity.NewJoinToken: %w", err)
	}
	enc := b32()
	id := enc.EncodeToString(b[:tokenIDBytes])
	secret := enc.EncodeToString(b[tokenIDBytes:])
	pin := ca.Pin()
	token := tokenPrefix + "." + id + "." + secret + "." + hex.EncodeToString(pin[:])
	rec := TokenRecord{
		ID:         id,
		SecretHash: tokenHash(id, secret),
		Expires:    now.Add(ttl).UTC().Round(0),
	}
	if len(labels) > 0 {
		rec.Labels = maps.Clone(labels)
	}
	return token, rec, nil
}

func tokenHash(id, secret string) [32]byte {
	h := sha256.New()
	h.Write([]byte(tokenHashDomain))
	h.Write([]byte(id))
	h.Write([]byte{0})
	h.Write([]byte(secret))
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// splitToken checks a token's syntax and returns its parts.
func splitToken(token string) (id, secret string, pin [32]byte, err error) {
	if len(token) != tokenLen {
		return "", "", pin, fmt.Errorf("length %d, want %d: %w", len(token), tokenLen, ErrTokenInvalid)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 4 || parts[0] != tokenPrefix || len(parts[1]) != tokenIDLen ||
		len(parts[2]) != tokenSecretLen || len(parts[3]) != 64 {
		return "", "", pin, fmt.Errorf("not a %s token: %w", tokenPrefix, ErrTokenInvalid)
	}
	if !isBase32(parts[1]) || !isBase32(parts[2]) {
		return "", "", pin, fmt.Errorf("bad base32: %w", ErrTokenInvalid)
	}
	for i := 0; i < 64; i++ {
		if c := parts[3][i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return "", "", pin, fmt.Errorf("bad CA pin: %w", ErrTokenInvalid)
		}
	}
	if _, err := hex.Decode(pin[:], []byte(parts[3])); err != nil {
		return "", "", pin, fmt.Errorf("bad CA pin: %w", ErrTokenInvalid)
	}
	return parts[1], parts[2], pin, nil
}

// isBase32 reports whether s is canonical unpadded lower-case base32 of a
// whole number of 5-byte groups (every length used here is a multiple of 8).
func isBase32(s string) bool {
	if len(s)%8 != 0 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

// ParseJoinToken checks a token's syntax and returns its ID and the CA pin
// it carries; an agent uses the pin with EnrollClientConfig. The secret is
// not returned: the agent sends the whole token when it enrolls.
func ParseJoinToken(token string) (id string, caPin [32]byte, err error) {
	id, _, caPin, err = splitToken(token)
	if err != nil {
		return "", [32]byte{}, fmt.Errorf("identity.ParseJoinToken: %w", err)
	}
	return id, caPin, nil
}

// VerifyJoinToken checks token against the stored rec at now. The secret
// is compared by its hash in constant time, before anything else, so a
// caller without the secret learns nothing about the record: errors wrap
// ErrTokenInvalid (wrong token), then ErrTokenUsed, then ErrTokenExpired.
// It does not mark the record used: the coordinator sets Used through Raft
// when it issues the certificate.
func VerifyJoinToken(rec TokenRecord, token string, now time.Time) error {
	id, secret, _, err := splitToken(token)
	if err != nil {
		return fmt.Errorf("identity.VerifyJoinToken: %w", err)
	}
	got := tokenHash(id, secret)
	idOK := subtle.ConstantTimeCompare([]byte(id), []byte(rec.ID))
	secretOK := subtle.ConstantTimeCompare(got[:], rec.SecretHash[:])
	if idOK&secretOK != 1 {
		return fmt.Errorf("identity.VerifyJoinToken: %w", ErrTokenInvalid)
	}
	if rec.Used {
		return fmt.Errorf("identity.VerifyJoinToken: token %s: %w", rec.ID, ErrTokenUsed)
	}
	if !now.Before(rec.Expires) {
		return fmt.Errorf("identity.VerifyJoinToken: token %s expired at %v: %w", rec.ID, rec.Expires, ErrTokenExpired)
	}
	return nil
}

// Label limits.
const (
	// MaxLabels is the most labels a token (and so an agent) may carry.
	MaxLabels = 32
	// MaxLabelLen bounds the length of a label key and of a label value.
	MaxLabelLen = 63
)

// ValidateLabels checks label syntax: at most MaxLabels labels; keys of 1
// to MaxLabelLen bytes of lower-case letters, digits, '-', '_', '.' and
// '/', starting with a letter or digit; values of 0 to MaxLabelLen bytes of
// letters, digits, '-', '_' and '.'.
func ValidateLabels(labels map[string]string) error {
	if len(labels) > MaxLabels {
		return fmt.Errorf("identity.ValidateLabels: %d labels, max %d: %w", len(labels), MaxLabels, ErrInvalidID)
	}
	for k, v := range labels {
		if !validLabel(k, true) || !validLabel(v, false) {
			return fmt.Errorf("identity.ValidateLabels: %q=%q: %w", k, v, ErrInvalidID)
		}
	}
	return nil
}

func validLabel(s string, key bool) bool {
	if len(s) > MaxLabelLen || key && len(s) == 0 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case !key && c >= 'A' && c <= 'Z':
		case (c == '-' || c == '_' || c == '.') && (i > 0 || !key):
		case c == '/' && key && i > 0:
		default:
			return false
		}
	}
	return true
}

// Token record encoding, version 1. Integers are big-endian.
//
//	version   1 byte   1
//	id        8 bytes  token ID
//	hash      32 bytes SecretHash
//	expires   8 bytes  signed Unix seconds, then 4 bytes nanoseconds < 1e9
//	flags     1 byte   bit 0: Used; other bits zero
//	nLabels   1 byte   0..MaxLabels
//	labels    nLabels × (keyLen 1 byte, key, valLen 1 byte, value),
//	          keys strictly ascending
const tokenRecordVersion = 1

// MarshalBinary encodes r canonically (labels sorted) for the Raft log.
func (r TokenRecord) MarshalBinary() ([]byte, error) {
	if len(r.ID) != tokenIDLen || !isBase32(r.ID) {
		return nil, fmt.Errorf("identity.TokenRecord.MarshalBinary: bad ID %q: %w", r.ID, ErrInvalidID)
	}
	if err := ValidateLabels(r.Labels); err != nil {
		return nil, fmt.Errorf("identity.TokenRecord.MarshalBinary: %w", err)
	}
	out := make([]byte, 0, 1+tokenIDLen+32+12+2+len(r.Labels)*16)
	out = append(out, tokenRecordVersion)
	out = append(out, r.ID...)
	out = append(out, r.SecretHash[:]...)
	out = binary.BigEndian.AppendUint64(out, uint64(r.Expires.Unix()))
	out = binary.BigEndian.AppendUint32(out, uint32(r.Expires.Nanosecond()))
	var flags byte
	if r.Used {
		flags |= 1
	}
	out = append(out, flags, byte(len(r.Labels)))
	for _, k := range slices.Sorted(maps.Keys(r.Labels)) {
		v := r.Labels[k]
		out = append(out, byte(len(k)))
		out = append(out, k...)
		out = append(out, byte(len(v)))
		out = append(out, v...)
	}
	return out, nil
}

// UnmarshalBinary decodes a record encoded by MarshalBinary. It accepts
// only the canonical encoding and never panics.
func (r *TokenRecord) UnmarshalBinary(b []byte) error {
	rd := reader{b: b}
	if rd.u8() != tokenRecordVersion {
		return fmt.Errorf("identity.TokenRecord.UnmarshalBinary: unknown version: %w", ErrMalformed)
	}
	var rec TokenRecord
	rec.ID = string(rd.next(tokenIDLen))
	copy(rec.SecretHash[:], rd.next(32))
	sec, nsec := int64(rd.u64()), rd.u32()
	rec.Expires = time.Unix(sec, int64(nsec)).UTC()
	flags := rd.u8()
	n := int(rd.u8())
	if rd.err != nil || !isBase32(rec.ID) || nsec >= 1e9 || rec.Expires.Unix() != sec || flags&^1 != 0 || n > MaxLabels {
		return fmt.Errorf("identity.TokenRecord.UnmarshalBinary: bad header: %w", ErrMalformed)
	}
	rec.Used = flags&1 != 0
	if n > 0 {
		rec.Labels = make(map[string]string, n)
	}
	prev := ""
	for i := 0; i < n; i++ {
		k := string(rd.next(int(rd.u8())))
		v := string(rd.next(int(rd.u8())))
		if rd.err != nil || !validLabel(k, true) || !validLabel(v, false) || (i > 0 && k <= prev) {
			return fmt.Errorf("identity.TokenRecord.UnmarshalBinary: label %d: %w", i, ErrMalformed)
		}
		rec.Labels[k] = v
		prev = k
	}
	if !rd.done() {
		return fmt.Errorf("identity.TokenRecord.UnmarshalBinary: %d trailing bytes: %w", len(b)-rd.off, ErrMalformed)
	}
	*r = rec
	return nil
}
