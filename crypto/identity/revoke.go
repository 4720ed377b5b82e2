package identity

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math/big"
	"slices"
	"sync"
	"time"
)

// Revoker says whether a certificate is revoked. The TLS configurations of
// this package call it on every handshake, from many goroutines at once:
// implementations must be safe for concurrent use and fast.
type Revoker interface {
	// Revoked reports whether the certificate with this serial number,
	// carrying identity id, must be refused.
	Revoked(serial *big.Int, id Identity) bool
}

// RevokerFunc adapts a function to the Revoker interface.
type RevokerFunc func(serial *big.Int, id Identity) bool

// Revoked calls f(serial, id).
func (f RevokerFunc) Revoked(serial *big.Int, id Identity) bool { return f(serial, id) }

var (
	_ Revoker = (*RevocationList)(nil)
	_ Revoker = RevokerFunc(nil)
)

// Limits of a RevocationList, checked by every mutation and by
// UnmarshalBinary.
const (
	// MaxRevokedSerials bounds the revoked serial numbers kept at once;
	// Prune drops those of expired certificates.
	MaxRevokedSerials = 1 << 20
	// MaxRevokedIdentities bounds the revoked identities.
	MaxRevokedIdentities = 1 << 20
	// maxSerialLen is RFC 5280's limit on serial numbers.
	maxSerialLen = 20
)

// RevocationList is the cluster's set of revoked certificate serial
// numbers and revoked identities. The coordinator FSM mutates it when a
// revocation is committed and snapshots it with MarshalBinary; the TLS
// verifier reads it on every handshake. All methods are safe for
// concurrent use. The zero value is an empty list. A RevocationList must
// not be copied after first use.
//
// A revoked serial refuses one certificate until it expires (the entry
// remembers the expiry so Prune can forget it afterwards). A revoked
// identity refuses every certificate of that identity, past and future,
// until UnrevokeIdentity.
type RevocationList struct {
	mu     sync.RWMutex
	serial map[string]int64 // big-endian serial magnitude -> NotAfter, Unix seconds
	ident  map[Identity]struct{}
}

// Revoked reports whether serial or id is revoked.
func (l *RevocationList) Revoked(serial *big.Int, id Identity) bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if _, ok := l.ident[id]; ok {
		return true
	}
	if serial == nil || serial.Sign() <= 0 || len(l.serial) == 0 {
		return false
	}
	var buf [maxSerialLen]byte
	if serial.BitLen() > 8*maxSerialLen {
		return false
	}
	b := serial.FillBytes(buf[:(serial.BitLen()+7)/8])
	_, ok := l.serial[string(b)]
	return ok
}

// RevokeSerial revokes the certificate with this serial number, which
// expires at notAfter. Revoking a serial twice keeps the later expiry.
func (l *RevocationList) RevokeSerial(serial *big.Int, notAfter time.Time) error {
	if serial == nil || serial.Sign() <= 0 || serial.BitLen() > 8*maxSerialLen {
		return fmt.Errorf("identity.RevocationList.RevokeSerial: serial must be positive and at most %d bytes: %w", maxSerialLen, ErrMalformed)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	k := string(serial.Bytes())
	old, exists := l.serial[k]
	if !exists && len(l.serial) >= MaxRevokedSerials {
		return fmt.Errorf("identity.RevocationList.RevokeSerial: list full (%d serials)", MaxRevokedSerials)
	}
	if l.serial == nil {
		l.serial = make(map[string]int64)
	}
	l.serial[k] = max(old, notAfter.Unix())
	return nil
}

// RevokeIdentity revokes every certificate of id.
func (l *RevocationList) RevokeIdentity(id Identity) error {
	if err := id.Validate(); err != nil {
		return fmt.Errorf("identity.RevocationList.RevokeIdentity: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, exists := l.ident[id]; !exists && len(l.ident) >= MaxRevokedIdentities {
		return fmt.Errorf("identity.RevocationList.RevokeIdentity: list full (%d identities)", MaxRevokedIdentities)
	}
	if l.ident == nil {
		l.ident = make(map[Identity]struct{})
	}
	l.ident[id] = struct{}{}
	return nil
}

// UnrevokeIdentity lifts the revocation of id and reports whether it was
// revoked. Serial revocations of its old certificates stay.
func (l *RevocationList) UnrevokeIdentity(id Identity) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.ident[id]
	delete(l.ident, id)
	return ok
}

// Prune forgets revoked serials of certificates expired before now (they
// are refused as expired anyway) and returns how many it dropped. In a
// replicated state machine, now must come from the log entry, not the
// clock, so that every replica prunes the same entries.
func (l *RevocationList) Prune(now time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for k, exp := range l.serial {
		if exp < now.Unix() {
			delete(l.serial, k)
			n++
		}
	}
	return n
}

// Len returns the number of revoked serials and identities.
func (l *RevocationList) Len() (serials, identities int) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return len(l.serial), len(l.ident)
}

// Identities returns the revoked identities, sorted by role then ID.
func (l *RevocationList) Identities() []Identity {
	l.mu.RLock()
	ids := make([]Identity, 0, len(l.ident))
	for id := range l.ident {
		ids = append(ids, id)
	}
	l.mu.RUnlock()
	slices.SortFunc(ids, compareIdentity)
	return ids
}

func compareIdentity(a, b Identity) int {
	if c := cmp.Compare(a.Role, b.Role); c != 0 {
		return c
	}
	return cmp.Compare(a.ID, b.ID)
}

// Revocation list encoding, version 1. Integers are big-endian; entries
// are sorted strictly ascending so that equal lists encode to equal bytes
// on every replica.
//
//	version   1 byte   1
//	nSerials  4 bytes
//	serials   nSerials × (len 1 byte 1..20, magnitude without leading
//	          zero, notAfter 8 bytes signed Unix seconds), by (len, bytes)
//	nIdents   4 bytes
//	idents    nIdents × (role 1 byte, len 1 byte, id), by (role, id)
const revocationVersion = 1

// MarshalBinary encodes the list in its canonical form for a Raft log
// entry or snapshot.
func (l *RevocationList) MarshalBinary() ([]byte, error) {
	l.mu.RLock()
	serials := make([]string, 0, len(l.serial))
	for k := range l.serial {
		serials = append(serials, k)
	}
	exp := make([]int64, len(serials))
	slices.SortFunc(serials, compareSerialKey)
	for i, k := range serials {
		exp[i] = l.serial[k]
	}
	l.mu.RUnlock()
	ids := l.Identities()

	out := []byte{revocationVersion}
	out = binary.BigEndian.AppendUint32(out, uint32(len(serials)))
	for i, k := range serials {
		out = append(out, byte(len(k)))
		out = append(out, k...)
		out = binary.BigEndian.AppendUint64(out, uint64(exp[i]))
	}
	out = binary.BigEndian.AppendUint32(out, uint32(len(ids)))
	for _, id := range ids {
		out = append(out, byte(id.Role), byte(len(id.ID)))
		out = append(out, id.ID...)
	}
	return out, nil
}

// compareSerialKey orders magnitudes without leading zeros numerically.
func compareSerialKey(a, b string) int {
	if c := cmp.Compare(len(a), len(b)); c != 0 {
		return c
	}
	return cmp.Compare(a, b)
}

// UnmarshalBinary replaces the list's contents with the decoded b,
// atomically for concurrent readers. It accepts only the canonical
// encoding, never panics, and allocates in proportion to len(b).
func (l *RevocationList) UnmarshalBinary(b []byte) error {
	r := reader{b: b}
	if r.u8() != revocationVersion {
		return fmt.Errorf("identity.RevocationList.UnmarshalBinary: unknown version: %w", ErrMalformed)
	}
	const minSerialEntry, minIdentEntry = 1 + 1 + 8, 1 + 1 + 1
	n := r.u32()
	if r.err != nil || n > MaxRevokedSerials || uint64(n)*minSerialEntry > uint64(len(b)-r.off) {
		return fmt.Errorf("identity.RevocationList.UnmarshalBinary: bad serial count: %w", ErrMalformed)
	}
	serial := make(map[string]int64, n)
	prev := ""
	for i := uint32(0); i < n; i++ {
		k := r.next(int(r.u8()))
		exp := int64(r.u64())
		if r.err != nil || len(k) == 0 || len(k) > maxSerialLen || k[0] == 0 ||
			(i > 0 && compareSerialKey(prev, string(k)) >= 0) {
			return fmt.Errorf("identity.RevocationList.UnmarshalBinary: serial %d: %w", i, ErrMalformed)
		}
		prev = string(k)
		serial[prev] = exp
	}
	m := r.u32()
	if r.err != nil || m > MaxRevokedIdentities || uint64(m)*minIdentEntry > uint64(len(b)-r.off) {
		return fmt.Errorf("identity.RevocationList.UnmarshalBinary: bad identity count: %w", ErrMalformed)
	}
	ident := make(map[Identity]struct{}, m)
	var prevID Identity
	for i := uint32(0); i < m; i++ {
		role := Role(r.u8())
		id := Identity{Role: role, ID: string(r.next(int(r.u8())))}
		if r.err != nil || id.Validate() != nil || (i > 0 && compareIdentity(prevID, id) >= 0) {
			return fmt.Errorf("identity.RevocationList.UnmarshalBinary: identity %d: %w", i, ErrMalformed)
		}
		prevID = id
		ident[id] = struct{}{}
	}
	if !r.done() {
		return fmt.Errorf("identity.RevocationList.UnmarshalBinary: %d trailing bytes: %w", len(b)-r.off, ErrMalformed)
	}
	l.mu.Lock()
	l.serial, l.ident = serial, ident
	l.mu.Unlock()
	return nil
}
