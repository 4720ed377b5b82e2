package secagg

import (
	"encoding/binary"
	"fmt"
)

// Wire format. Every message is
//
//	version (1 byte, = 1) | type (1 byte) | round digest (32 bytes) | body
//
// with all integers big-endian except the vector words and share elements,
// which are little-endian. Lists are a uint32 count followed by fixed-size
// entries, and the count must account for every remaining byte, so a decoder
// allocates at most in proportion to its input and never more than
// MaxParticipants entries or MaxDim words. Bodies:
//
//	AdvertiseKeys     from u32 | enc key 32 | mask key 32 | seed commit 32 | sig 64
//	KeyList           to u32 | n u32 | n x (AdvertiseKeys body)
//	ShareKeys         from u32 | n u32 | n x (to u32 | ciphertext 108)
//	ShareList         to u32 | n u32 | n x (from u32 | ciphertext 108)
//	MaskedInput       from u32 | d u32 | d x word u32 (little-endian)
//	SurvivorList      n u32 | n x id u32
//	ConsistencyCheck  from u32 | sig 64
//	SignatureList     to u32 | n u32 | n x (from u32 | sig 64)
//	Unmask            from u32 | n u32 | n x (owner u32 | kind u8 | share 40)
const wireVersion = 1

// Message type bytes (append-only).
const (
	typeAdvertiseKeys    = 1
	typeKeyList          = 2
	typeShareKeys        = 3
	typeShareList        = 4
	typeMaskedInput      = 5
	typeSurvivorList     = 6
	typeConsistencyCheck = 7
	typeSignatureList    = 8
	typeUnmask           = 9
)

const (
	headerSize     = 2 + 32
	advertiseBody  = 4 + 32 + 32 + 32 + 64
	encShareEntry  = 4 + ShareCiphertextSize
	checkBody      = 4 + 64
	unmaskEntry    = 4 + 1 + ShareSize
	survivorsEntry = 4
)

func header(typ byte, round *[32]byte, size int) []byte {
	b := make([]byte, 0, headerSize+size)
	b = append(b, wireVersion, typ)
	return append(b, round[:]...)
}

// reader decodes one message; the first error sticks.
type reader struct {
	b    []byte
	name string
	err  error
}

func newReader(name string, typ byte, data []byte, round *[32]byte) *reader {
	r := &reader{b: data, name: name}
	if len(data) < headerSize {
		r.fail("%d bytes, shorter than a header", len(data))
		return r
	}
	if data[0] != wireVersion {
		r.fail("version %d, want %d", data[0], wireVersion)
		return r
	}
	if data[1] != typ {
		r.fail("type %d, want %d", data[1], typ)
		return r
	}
	copy(round[:], data[2:headerSize])
	r.b = data[headerSize:]
	return r
}

func (r *reader) fail(format string, a ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("secagg.%s.UnmarshalBinary: %w: %s", r.name, ErrMalformed, fmt.Sprintf(format, a...))
	}
}

func (r *reader) u32() uint32 {
	if r.err != nil || len(r.b) < 4 {
		r.fail("truncated")
		return 0
	}
	v := binary.BigEndian.Uint32(r.b)
	r.b = r.b[4:]
	return v
}

func (r *reader) read(dst []byte) {
	if r.err != nil || len(r.b) < len(dst) {
		r.fail("truncated")
		return
	}
	copy(dst, r.b)
	r.b = r.b[len(dst):]
}

// count reads a list length and checks that exactly n entries of size
// entry remain and n <= limit.
func (r *reader) count(entry, limit int) int {
	n := r.u32()
	if r.err != nil {
		return 0
	}
	if uint64(n) > uint64(limit) {
		r.fail("%d entries, limit %d", n, limit)
		return 0
	}
	if uint64(len(r.b)) != uint64(n)*uint64(entry) {
		r.fail("%d entries of %d bytes but %d bytes remain", n, entry, len(r.b))
		return 0
	}
	return int(n)
}

func (r *reader) done() error {
	if r.err == nil && len(r.b) != 0 {
		r.fail("%d trailing bytes", len(r.b))
	}
	return r.err
}

func put32(b []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(b, v) }

func (m *AdvertiseKeys) appendBody(b []byte) []byte {
	b = put32(b, m.From)
	b = append(b, m.EncKey[:]...)
	b = append(b, m.MaskKey[:]...)
	b = append(b, m.SeedCommit[:]...)
	return append(b, m.Sig[:]...)
}

func (m *AdvertiseKeys) readBody(r *reader) {
	m.From = r.u32()
	r.read(m.EncKey[:])
	r.read(m.MaskKey[:])
	r.read(m.SeedCommit[:])
	r.read(m.Sig[:])
}

// MarshalBinary encodes the message.
func (m *AdvertiseKeys) MarshalBinary() ([]byte, error) {
	return m.appendBody(header(typeAdvertiseKeys, &m.Round, advertiseBody)), nil
}

// UnmarshalBinary decodes the message; it never panics and rejects any
// input that MarshalBinary would not produce.
func (m *AdvertiseKeys) UnmarshalBinary(data []byte) error {
	var v AdvertiseKeys
	r := newReader("AdvertiseKeys", typeAdvertiseKeys, data, &v.Round)
	v.readBody(r)
	if err := r.done(); err != nil {
		return err
	}
	*m = v
	return nil
}

// MarshalBinary encodes the message.
func (m *KeyList) MarshalBinary() ([]byte, error) {
	b := header(typeKeyList, &m.Round, 8+len(m.Keys)*advertiseBody)
	b = put32(b, m.To)
	b = put32(b, uint32(len(m.Keys)))
	for i := range m.Keys {
		b = m.Keys[i].appendBody(b)
	}
	return b, nil
}

// UnmarshalBinary decodes the message; it never panics and rejects any
// input that MarshalBinary would not produce.
func (m *KeyList) UnmarshalBinary(data []byte) error {
	var v KeyList
	r := newReader("KeyList", typeKeyList, data, &v.Round)
	v.To = r.u32()
	n := r.count(advertiseBody, MaxParticipants)
	if r.err == nil {
		v.Keys = make([]AdvertiseKeys, n)
		for i := range v.Keys {
			v.Keys[i].Round = v.Round
			v.Keys[i].readBody(r)
		}
	}
	if err := r.done(); err != nil {
		return err
	}
	*m = v
	return nil
}

func appendShares(b []byte, s []EncryptedShare) []byte {
	b = put32(b, uint32(len(s)))
	for i := range s {
		b = put32(b, s[i].Peer)
		b = append(b, s[i].Ciphertext[:]...)
	}
	return b
}

func readShares(r *reader) []EncryptedShare {
	n := r.count(encShareEntry, MaxParticipants)
	if r.err != nil {
		return nil
	}
	s := make([]EncryptedShare, n)
	for i := range s {
		s[i].Peer = r.u32()
		r.read(s[i].Ciphertext[:])
	}
	return s
}

// MarshalBinary encodes the message.
func (m *ShareKeys) MarshalBinary() ([]byte, error) {
	b := header(typeShareKeys, &m.Round, 8+len(m.Shares)*encShareEntry)
	return appendShares(put32(b, m.From), m.Shares), nil
}

// UnmarshalBinary decodes the message; it never panics and rejects any
// input that MarshalBinary would not produce.
func (m *ShareKeys) UnmarshalBinary(data []byte) error {
	var v ShareKeys
	r := newReader("ShareKeys", typeShareKeys, data, &v.Round)
	v.From = r.u32()
	v.Shares = readShares(r)
	if err := r.done(); err != nil {
		return err
	}
	*m = v
	return nil
}

// MarshalBinary encodes the message.
func (m *ShareList) MarshalBinary() ([]byte, error) {
	b := header(typeShareList, &m.Round, 8+len(m.Shares)*encShareEntry)
	return appendShares(put32(b, m.To), m.Shares), nil
}

// UnmarshalBinary decodes the message; it never panics and rejects any
// input that MarshalBinary would not produce.
func (m *ShareList) UnmarshalBinary(data []byte) error {
	var v ShareList
	r := newReader("ShareList", typeShareList, data, &v.Round)
	v.To = r.u32()
	v.Shares = readShares(r)
	if err := r.done(); err != nil {
		return err
	}
	*m = v
	return nil
}

// MarshalBinary encodes the message.
func (m *MaskedInput) MarshalBinary() ([]byte, error) {
	if len(m.Y) > MaxDim {
		return nil, fmt.Errorf("secagg.MaskedInput.MarshalBinary: %w: %d words", ErrMalformed, len(m.Y))
	}
	b := header(typeMaskedInput, &m.Round, 8+4*len(m.Y))
	b = put32(b, m.From)
	b = put32(b, uint32(len(m.Y)))
	for _, w := range m.Y {
		b = binary.LittleEndian.AppendUint32(b, w)
	}
	return b, nil
}

// UnmarshalBinary decodes the message; it never panics and rejects any
// input that MarshalBinary would not produce.
func (m *MaskedInput) UnmarshalBinary(data []byte) error {
	var v MaskedInput
	r := newReader("MaskedInput", typeMaskedInput, data, &v.Round)
	v.From = r.u32()
	n := r.count(4, MaxDim)
	if r.err == nil {
		v.Y = make([]uint32, n)
		for i := range v.Y {
			v.Y[i] = binary.LittleEndian.Uint32(r.b[4*i:])
		}
		r.b = r.b[4*n:]
	}
	if err := r.done(); err != nil {
		return err
	}
	*m = v
	return nil
}

// MarshalBinary encodes the message.
func (m *SurvivorList) MarshalBinary() ([]byte, error) {
	b := header(typeSurvivorList, &m.Round, 4+4*len(m.Survivors))
	b = put32(b, uint32(len(m.Survivors)))
	for _, id := range m.Survivors {
		b = put32(b, id)
	}
	return b, nil
}

// UnmarshalBinary decodes the message; it never panics and rejects any
// input that MarshalBinary would not produce.
func (m *SurvivorList) UnmarshalBinary(data []byte) error {
	var v SurvivorList
	r := newReader("SurvivorList", typeSurvivorList, data, &v.Round)
	n := r.count(survivorsEntry, MaxParticipants)
	if r.err == nil {
		v.Survivors = make([]uint32, n)
		for i := range v.Survivors {
			v.Survivors[i] = r.u32()
		}
	}
	if err := r.done(); err != nil {
		return err
	}
	*m = v
	return nil
}

// MarshalBinary encodes the message.
func (m *ConsistencyCheck) MarshalBinary() ([]byte, error) {
	b := header(typeConsistencyCheck, &m.Round, checkBody)
	b = put32(b, m.From)
	return append(b, m.Sig[:]...), nil
}

// UnmarshalBinary decodes the message; it never panics and rejects any
// input that MarshalBinary would not produce.
func (m *ConsistencyCheck) UnmarshalBinary(data []byte) error {
	var v ConsistencyCheck
	r := newReader("ConsistencyCheck", typeConsistencyCheck, data, &v.Round)
	v.From = r.u32()
	r.read(v.Sig[:])
	if err := r.done(); err != nil {
		return err
	}
	*m = v
	return nil
}

// MarshalBinary encodes the message.
func (m *SignatureList) MarshalBinary() ([]byte, error) {
	b := header(typeSignatureList, &m.Round, 8+len(m.Checks)*checkBody)
	b = put32(b, m.To)
	b = put32(b, uint32(len(m.Checks)))
	for i := range m.Checks {
		b = put32(b, m.Checks[i].From)
		b = append(b, m.Checks[i].Sig[:]...)
	}
	return b, nil
}

// UnmarshalBinary decodes the message; it never panics and rejects any
// input that MarshalBinary would not produce.
func (m *SignatureList) UnmarshalBinary(data []byte) error {
	var v SignatureList
	r := newReader("SignatureList", typeSignatureList, data, &v.Round)
	v.To = r.u32()
	n := r.count(checkBody, MaxParticipants)
	if r.err == nil {
		v.Checks = make([]ConsistencyCheck, n)
		for i := range v.Checks {
			v.Checks[i].Round = v.Round
			v.Checks[i].From = r.u32()
			r.read(v.Checks[i].Sig[:])
		}
	}
	if err := r.done(); err != nil {
		return err
	}
	*m = v
	return nil
}

// MarshalBinary encodes the message.
func (m *Unmask) MarshalBinary() ([]byte, error) {
	b := header(typeUnmask, &m.Round, 8+len(m.Shares)*unmaskEntry)
	b = put32(b, m.From)
	b = put32(b, uint32(len(m.Shares)))
	for i := range m.Shares {
		b = put32(b, m.Shares[i].Owner)
		b = append(b, byte(m.Shares[i].Kind))
		b = append(b, m.Shares[i].Value[:]...)
	}
	return b, nil
}

// UnmarshalBinary decodes the message; it never panics and rejects any
// input that MarshalBinary would not produce. Share kinds must be SeedShare
// or KeyShare and share elements must lie in the field.
func (m *Unmask) UnmarshalBinary(data []byte) error {
	var v Unmask
	r := newReader("Unmask", typeUnmask, data, &v.Round)
	v.From = r.u32()
	n := r.count(unmaskEntry, MaxParticipants)
	if r.err == nil {
		v.Shares = make([]UnmaskShare, n)
		for i := range v.Shares {
			s := &v.Shares[i]
			s.Owner = r.u32()
			var k [1]byte
			r.read(k[:])
			s.Kind = ShareKind(k[0])
			r.read(s.Value[:])
			if s.Kind != SeedShare && s.Kind != KeyShare {
				r.fail("share kind %d", s.Kind)
			}
			if _, ok := parseShare(s.Value[:]); !ok {
				r.fail("share element outside the field")
			}
		}
	}
	if err := r.done(); err != nil {
		return err
	}
	*m = v
	return nil
}
