package identity

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"strings"

	"golang.org/x/crypto/argon2"
)

// SealKeySize is the size of the key that seals a CA at rest.
const SealKeySize = 32

// Sealed CA format, version 1 (a raw seal key). All integers are
// big-endian.
//
//	magic    8 bytes  "fedgeCA" 0x01
//	nameLen  1 byte   cluster name length, 1..MaxIDLen
//	name     nameLen  cluster name
//	certLen  2 bytes  CA certificate DER length, 1..maxCertDER
//	cert     certLen  CA certificate DER (public, authenticated)
//	salt     32 bytes HKDF salt, random per seal
//	nonce    12 bytes AES-GCM nonce, random per seal
//	box      48 bytes AES-256-GCM(Ed25519 seed), tag included
//
// Version 2 (a passphrase) inserts the key-stretching parameters after
// the magic "fedgeCA" 0x02, then continues as version 1 from nameLen:
//
//	kdf      1 byte   1 = argon2id
//	time     4 bytes  argon2id passes
//	memory   4 bytes  argon2id memory, KiB
//	threads  1 byte   argon2id lanes
//	ksalt    16 bytes argon2id salt, random per seal
//
// The seal key of version 2 is argon2id(passphrase, ksalt, time, memory,
// threads), 32 bytes. The AES key is HKDF-SHA256(sealKey, salt, sealInfo +
// name); the GCM associated data is every byte before box, so the cluster
// name, the certificate and the KDF parameters cannot be swapped without
// the open failing.
const (
	sealMagic     = "fedgeCA\x01"
	sealMagicPass = "fedgeCA\x02"
	sealSaltSize  = 32
	sealInfo      = "fedge/identity/ca-seal/v1 "
	kdfArgon2id   = 1
	kdfSaltSize   = 16
)

// Bounds of the argon2id parameters a sealed CA may ask for, so that a
// forged blob cannot make OpenCA spend unbounded memory or time.
const (
	MaxKDFMemoryKiB = 4 << 20 // 4 GiB
	MaxKDFTime      = 64
)

// KDFParams are the argon2id parameters that stretch a passphrase into a
// seal key. Zero fields mean the defaults: 3 passes, 64 MiB, 2 lanes
// (about 0.2 s to derive on one core of the build machine).
type KDFParams struct {
	Time      uint32 // passes; default 3
	MemoryKiB uint32 // memory in KiB; default 65536 (64 MiB)
	Threads   uint8  // lanes; default 2
}

func (p KDFParams) withDefaults() KDFParams {
	if p.Time == 0 {
		p.Time = 3
	}
	if p.MemoryKiB == 0 {
		p.MemoryKiB = 64 << 10
	}
	if p.Threads == 0 {
		p.Threads = 2
	}
	return p
}

func (p KDFParams) validate() error {
	if p.Time < 1 || p.Time > MaxKDFTime || p.Threads < 1 ||
		p.MemoryKiB < 8*uint32(p.Threads) || p.MemoryKiB > MaxKDFMemoryKiB {
		return fmt.Errorf("argon2id time %d, memory %d KiB, threads %d out of bounds: %w", p.Time, p.MemoryKiB, p.Threads, ErrMalformed)
	}
	return nil
}

// NewSealKey returns a fresh random key for Seal and OpenCA, read from
// rand. Clusters that do not get one from the operator generate it at
// bootstrap; it must reach every coordinator out of band (config file or
// secret store), never through Raft.
func NewSealKey(rand io.Reader) ([]byte, error) {
	k := make([]byte, SealKeySize)
	if _, err := io.ReadFull(rand, k); err != nil {
		return nil, fmt.Errorf("identity.NewSealKey: %w", err)
	}
	return k, nil
}

// ParseSealKey decodes a seal key written as hex (surrounding white space
// ignored), as fedge init writes it. Anything but 64 hex digits gives an
// error wrapping ErrSealKey.
func ParseSealKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	k, err := hex.DecodeString(s)
	if err != nil || len(k) != SealKeySize {
		return nil, fmt.Errorf("identity.ParseSealKey: want %d hex digits, got %d characters: %w", 2*SealKeySize, len(s), ErrSealKey)
	}
	return k, nil
}

// Seal encrypts the CA's private key under key (SealKeySize bytes) with
// AES-256-GCM and returns a self-describing blob, safe to store in the
// Raft-replicated state. The certificate and the cluster name travel in
// clear but authenticated.
func (ca *CA) Seal(key []byte) ([]byte, error) {
	if len(key) != SealKeySize {
		return nil, fmt.Errorf("identity.CA.Seal: key of %d bytes, want %d: %w", len(key), SealKeySize, ErrSealKey)
	}
	out, err := ca.seal(key, []byte(sealMagic))
	if err != nil {
		return nil, fmt.Errorf("identity.CA.Seal: %w", err)
	}
	return out, nil
}

// SealPassphrase is Seal with a key stretched from passphrase by argon2id
// (parameters p, zero fields meaning the defaults). The parameters and
// the argon2id salt travel in the blob, so SealKeyFromPassphrase derives
// the same key from the blob and the passphrase alone.
func (ca *CA) SealPassphrase(passphrase []byte, p KDFParams) ([]byte, error) {
	if len(passphrase) == 0 {
		return nil, fmt.Errorf("identity.CA.SealPassphrase: empty passphrase: %w", ErrSealKey)
	}
	p = p.withDefaults()
	if err := p.validate(); err != nil {
		return nil, fmt.Errorf("identity.CA.SealPassphrase: %w", err)
	}
	head := make([]byte, 0, len(sealMagicPass)+1+4+4+1+kdfSaltSize)
	head = append(head, sealMagicPass...)
	head = append(head, kdfArgon2id)
	head = binary.BigEndian.AppendUint32(head, p.Time)
	head = binary.BigEndian.AppendUint32(head, p.MemoryKiB)
	head = append(head, p.Threads)
	saltAt := len(head)
	head = head[:saltAt+kdfSaltSize]
	if _, err := io.ReadFull(rand.Reader, head[saltAt:]); err != nil {
		return nil, fmt.Errorf("identity.CA.SealPassphrase: %w", err)
	}
	key := argon2.IDKey(passphrase, head[saltAt:], p.Time, p.MemoryKiB, p.Threads, SealKeySize)
	out, err := ca.seal(key, head)
	if err != nil {
		return nil, fmt.Errorf("identity.CA.SealPassphrase: %w", err)
	}
	return out, nil
}

// seal appends the version-1 body, sealed under key, to head.
func (ca *CA) seal(key, head []byte) ([]byte, error) {
	der := ca.cert.Raw
	out := make([]byte, 0, len(head)+1+len(ca.cluster)+2+len(der)+sealSaltSize+12+ed25519.SeedSize+16)
	out = append(out, head...)
	out = append(out, byte(len(ca.cluster)))
	out = append(out, ca.cluster...)
	out = binary.BigEndian.AppendUint16(out, uint16(len(der)))
	out = append(out, der...)
	saltAt := len(out)
	out = out[:saltAt+sealSaltSize+12]
	if _, err := io.ReadFull(rand.Reader, out[saltAt:]); err != nil {
		return nil, err
	}
	aead, err := sealAEAD(key, out[saltAt:saltAt+sealSaltSize], ca.cluster)
	if err != nil {
		return nil, err
	}
	header := append([]byte(nil), out...)
	nonce := header[saltAt+sealSaltSize:]
	return aead.Seal(out, nonce, ca.key.Seed(), header), nil
}

// SealedWithPassphrase reports whether sealed is a CA sealed by
// SealPassphrase (its seal key comes from SealKeyFromPassphrase), as
// opposed to Seal (a raw key).
func SealedWithPassphrase(sealed []byte) bool {
	return len(sealed) >= len(sealMagicPass) && string(sealed[:len(sealMagicPass)]) == sealMagicPass
}

// readKDF reads the KDF parameters of a version-2 blob after its magic.
func readKDF(r *reader) (KDFParams, []byte, error) {
	kind := r.u8()
	p := KDFParams{Time: r.u32(), MemoryKiB: r.u32(), Threads: r.u8()}
	salt := r.next(kdfSaltSize)
	if r.err != nil || kind != kdfArgon2id {
		return p, nil, fmt.Errorf("bad key-stretching header: %w", ErrMalformed)
	}
	if err := p.validate(); err != nil {
		return p, nil, err
	}
	return p, salt, nil
}

// SealKeyFromPassphrase derives the seal key of a CA sealed by
// SealPassphrase from the passphrase, with the argon2id parameters and
// salt the blob carries. For a CA sealed under a raw key it returns an
// error wrapping ErrSealKey that says so; for bytes that are not a sealed
// CA, ErrMalformed. A wrong passphrase is only detected by OpenCA.
func SealKeyFromPassphrase(sealed, passphrase []byte) ([]byte, error) {
	if len(sealed) >= len(sealMagic) && string(sealed[:len(sealMagic)]) == sealMagic {
		return nil, fmt.Errorf("identity.SealKeyFromPassphrase: the CA is sealed under a raw seal key, not a passphrase: %w", ErrSealKey)
	}
	r := reader{b: sealed}
	if string(r.next(len(sealMagicPass))) != sealMagicPass {
		return nil, fmt.Errorf("identity.SealKeyFromPassphrase: bad magic or version: %w", ErrMalformed)
	}
	p, salt, err := readKDF(&r)
	if err != nil {
		return nil, fmt.Errorf("identity.SealKeyFromPassphrase: %w", err)
	}
	if len(passphrase) == 0 {
		return nil, fmt.Errorf("identity.SealKeyFromPassphrase: empty passphrase: %w", ErrSealKey)
	}
	return argon2.IDKey(passphrase, salt, p.Time, p.MemoryKiB, p.Threads, SealKeySize), nil
}

// OpenCA decrypts a CA sealed by Seal or SealPassphrase (then key comes
// from SealKeyFromPassphrase). A wrong key or altered bytes give an error
// wrapping ErrSealKey; bytes that are not a sealed CA give ErrMalformed.
// It never panics, whatever sealed holds.
func OpenCA(sealed, key []byte) (*CA, error) {
	if len(key) != SealKeySize {
		return nil, fmt.Errorf("identity.OpenCA: key of %d bytes, want %d: %w", len(key), SealKeySize, ErrSealKey)
	}
	r := reader{b: sealed}
	switch string(r.next(len(sealMagic))) {
	case sealMagic:
	case sealMagicPass:
		if _, _, err := readKDF(&r); err != nil {
			return nil, fmt.Errorf("identity.OpenCA: %w", err)
		}
	default:
		return nil, fmt.Errorf("identity.OpenCA: bad magic or version: %w", ErrMalformed)
	}
	name := string(r.next(int(r.u8())))
	der := r.next(int(r.u16()))
	salt := r.next(sealSaltSize)
	nonce := r.next(12)
	adLen := r.off
	box := r.next(ed25519.SeedSize + 16)
	if r.err != nil || r.off != len(sealed) || len(der) == 0 {
		return nil, fmt.Errorf("identity.OpenCA: %d bytes do not frame a sealed CA: %w", len(sealed), ErrMalformed)
	}
	if err := ValidateID(name); err != nil {
		return nil, fmt.Errorf("identity.OpenCA: cluster name: %v: %w", err, ErrMalformed)
	}
	aead, err := sealAEAD(key, salt, name)
	if err != nil {
		return nil, fmt.Errorf("identity.OpenCA: %w", err)
	}
	seed, err := aead.Open(nil, nonce, box, sealed[:adLen])
	if err != nil {
		return nil, fmt.Errorf("identity.OpenCA: %w", ErrSealKey)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("identity.OpenCA: %v: %w", err, ErrMalformed)
	}
	ca, err := newCA(cert, ed25519.NewKeyFromSeed(seed), name)
	if err != nil {
		return nil, fmt.Errorf("identity.OpenCA: %w", err)
	}
	return ca, nil
}

func sealAEAD(key, salt []byte, cluster string) (cipher.AEAD, error) {
	k, err := hkdf.Key(sha256.New, key, salt, sealInfo+cluster, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}
