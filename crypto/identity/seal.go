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
	"fmt"
	"io"
)

// SealKeySize is the size of the key that seals a CA at rest.
const SealKeySize = 32

// Sealed CA format, version 1. All integers are big-endian.
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
// The AES key is HKDF-SHA256(sealKey, salt, sealInfo + name); the GCM
// associated data is every byte before box, so the cluster name and the
// certificate cannot be swapped without the open failing.
const (
	sealMagic    = "fedgeCA\x01"
	sealSaltSize = 32
	sealInfo     = "fedge/identity/ca-seal/v1 "
)

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

// Seal encrypts the CA's private key under key (SealKeySize bytes) with
// AES-256-GCM and returns a self-describing blob, safe to store in the
// Raft-replicated state. The certificate and the cluster name travel in
// clear but authenticated.
func (ca *CA) Seal(key []byte) ([]byte, error) {
	if len(key) != SealKeySize {
		return nil, fmt.Errorf("identity.CA.Seal: key of %d bytes, want %d: %w", len(key), SealKeySize, ErrSealKey)
	}
	der := ca.cert.Raw
	out := make([]byte, 0, len(sealMagic)+1+len(ca.cluster)+2+len(der)+sealSaltSize+12+ed25519.SeedSize+16)
	out = append(out, sealMagic...)
	out = append(out, byte(len(ca.cluster)))
	out = append(out, ca.cluster...)
	out = binary.BigEndian.AppendUint16(out, uint16(len(der)))
	out = append(out, der...)
	saltAt := len(out)
	out = out[:saltAt+sealSaltSize+12]
	if _, err := io.ReadFull(rand.Reader, out[saltAt:]); err != nil {
		return nil, fmt.Errorf("identity.CA.Seal: %w", err)
	}
	aead, err := sealAEAD(key, out[saltAt:saltAt+sealSaltSize], ca.cluster)
	if err != nil {
		return nil, fmt.Errorf("identity.CA.Seal: %w", err)
	}
	header := append([]byte(nil), out...)
	nonce := header[saltAt+sealSaltSize:]
	return aead.Seal(out, nonce, ca.key.Seed(), header), nil
}

// OpenCA decrypts a CA sealed by Seal. A wrong key or altered bytes give
// an error wrapping ErrSealKey; bytes that are not a sealed CA give
// ErrMalformed. It never panics, whatever sealed holds.
func OpenCA(sealed, key []byte) (*CA, error) {
	if len(key) != SealKeySize {
		return nil, fmt.Errorf("identity.OpenCA: key of %d bytes, want %d: %w", len(key), SealKeySize, ErrSealKey)
	}
	r := reader{b: sealed}
	if string(r.next(len(sealMagic))) != sealMagic {
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
