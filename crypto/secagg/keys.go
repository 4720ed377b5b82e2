package secagg

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
)

// Domain-separation labels: every signature, key derivation and associated
// data starts with one of these, then the round digest.
const (
	labelAdvertise   = "fedge/secagg/v1 advertise"
	labelConsistency = "fedge/secagg/v1 consistency"
	labelShareKey    = "fedge/secagg/v1 share key"
	labelShareAD     = "fedge/secagg/v1 share"
	labelMaskSeed    = "fedge/secagg/v1 pairwise mask"
	labelSeedCommit  = "fedge/secagg/v1 seed commitment"
)

// seedCommit is SHA-256(label || round || id || b): binding, and hiding
// because b is 256 uniformly random bits.
func seedCommit(round *[32]byte, id uint32, seed *[32]byte) [32]byte {
	h := sha256.New()
	h.Write([]byte(labelSeedCommit))
	h.Write(round[:])
	h.Write(u32be(id))
	h.Write(seed[:])
	var out [32]byte
	h.Sum(out[:0])
	return out
}

func u32be(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

func advertiseSigned(m *AdvertiseKeys) []byte {
	b := make([]byte, 0, len(labelAdvertise)+32+4+96)
	b = append(b, labelAdvertise...)
	b = append(b, m.Round[:]...)
	b = put32(b, m.From)
	b = append(b, m.EncKey[:]...)
	b = append(b, m.MaskKey[:]...)
	return append(b, m.SeedCommit[:]...)
}

// survivorsHash commits to a survivor set: SHA-256 of the sorted IDs.
func survivorsHash(ids []uint32) [32]byte {
	h := sha256.New()
	var b [4]byte
	for _, id := range ids {
		binary.BigEndian.PutUint32(b[:], id)
		h.Write(b[:])
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}

func consistencySigned(round *[32]byte, from uint32, u3 *[32]byte) []byte {
	b := make([]byte, 0, len(labelConsistency)+32+4+32)
	b = append(b, labelConsistency...)
	b = append(b, round[:]...)
	b = put32(b, from)
	return append(b, u3[:]...)
}

func signConsistency(key ed25519.PrivateKey, round *[32]byte, from uint32, u3 *[32]byte) ConsistencyCheck {
	m := ConsistencyCheck{Round: *round, From: from}
	copy(m.Sig[:], ed25519.Sign(key, consistencySigned(round, from, u3)))
	return m
}

// newX25519 draws a private key from rand (the rand argument of
// ecdh.Curve.GenerateKey is ignored since Go 1.26; reading the scalar here
// keeps tests with a seeded reader reproducible).
func newX25519(rand io.Reader) (*ecdh.PrivateKey, error) {
	var k [32]byte
	if _, err := io.ReadFull(rand, k[:]); err != nil {
		return nil, err
	}
	defer clear(k[:])
	return ecdh.X25519().NewPrivateKey(k[:])
}

// agree runs X25519; it fails for low-order public keys (all-zero output).
func agree(priv *ecdh.PrivateKey, pub *[32]byte) ([]byte, error) {
	pk, err := ecdh.X25519().NewPublicKey(pub[:])
	if err != nil {
		return nil, err
	}
	return priv.ECDH(pk)
}

// lowOrderX25519 reports whether pub is one of the u-coordinates of small
// order (dividing 8, on the curve or its twist), with or without the top
// bit that X25519 ignores: with any clamped scalar they give the all-zero
// shared secret, so every key agreement with them fails. These are the
// canonical values 0, 1, p-1 and the two points of order 8, and the
// non-canonical p and p+1 (the list libsodium checks).
func lowOrderX25519(pub *[32]byte) bool {
	k := *pub
	k[31] &= 0x7f
	for _, bad := range [...]string{
		"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", // 0
		"\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", // 1
		"\xe0\xeb\x7a\x7c\x3b\x41\xb8\xae\x16\x56\xe3\xfa\xf1\x9f\xc4\x6a\xda\x09\x8d\xeb\x9c\x32\xb1\xfd\x86\x62\x05\x16\x5f\x49\xb8\x00", // an order-8 point
		"\x5f\x9c\x95\xbc\xa3\x50\x8c\x24\xb1\xd0\xb1\x55\x9c\x83\xef\x5b\x04\x44\x5c\xc4\x58\x1c\x8e\x86\xd8\x22\x4e\xdd\xd0\x9f\x11\x57", // the other order-8 point
		"\xec\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f", // p-1
		"\xed\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f", // p (non-canonical 0)
		"\xee\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f", // p+1 (non-canonical 1)
	} {
		if string(k[:]) == bad {
			return true
		}
	}
	return false
}

// shareAEAD returns the AES-256-GCM cipher for shares sent from -> to,
// keyed by HKDF-SHA256(X25519 secret, salt = round digest,
// info = label || from || to): each direction has its own key.
func shareAEAD(secret []byte, round *[32]byte, from, to uint32) (cipher.AEAD, error) {
	info := labelShareKey + string(u32be(from)) + string(u32be(to))
	key, err := hkdf.Key(sha256.New, secret, round[:], info, 32)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	blk, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(blk)
}

func shareAD(round *[32]byte, from, to uint32) []byte {
	b := make([]byte, 0, len(labelShareAD)+40)
	b = append(b, labelShareAD...)
	b = append(b, round[:]...)
	b = put32(b, from)
	return put32(b, to)
}

// sealShares encrypts the recipient's shares of s_sk and b.
func sealShares(secret []byte, round *[32]byte, from, to uint32, sk, b *share, rand io.Reader) (ct [ShareCiphertextSize]byte, err error) {
	aead, err := shareAEAD(secret, round, from, to)
	if err != nil {
		return ct, err
	}
	nonce := ct[:12]
	if _, err := io.ReadFull(rand, nonce); err != nil {
		return ct, err
	}
	pt := make([]byte, 0, 2*ShareSize)
	pt = sk.appendTo(pt)
	pt = b.appendTo(pt)
	aead.Seal(ct[12:12], nonce, pt, shareAD(round, from, to))
	clear(pt)
	return ct, nil
}

// openShares decrypts and parses a ciphertext from -> to.
func openShares(secret []byte, round *[32]byte, from, to uint32, ct *[ShareCiphertextSize]byte) (sk, b share, err error) {
	aead, err := shareAEAD(secret, round, from, to)
	if err != nil {
		return sk, b, err
	}
	pt, err := aead.Open(nil, ct[:12], ct[12:], shareAD(round, from, to))
	if err != nil {
		return sk, b, fmt.Errorf("%w: share ciphertext from %d does not authenticate", ErrForged, from)
	}
	defer clear(pt)
	var ok1, ok2 bool
	sk, ok1 = parseShare(pt[:ShareSize])
	b, ok2 = parseShare(pt[ShareSize:])
	if !ok1 || !ok2 {
		return sk, b, fmt.Errorf("%w: share from %d outside the field", ErrMalformed, from)
	}
	return sk, b, nil
}

// pairSeed derives the seed of the pairwise mask of clients a and b from
// their X25519 secret: HKDF-SHA256(secret, salt = round digest,
// info = label || min(a,b) || max(a,b)).
func pairSeed(secret []byte, round *[32]byte, a, b uint32) ([32]byte, error) {
	lo, hi := min(a, b), max(a, b)
	var seed [32]byte
	k, err := hkdf.Key(sha256.New, secret, round[:], labelMaskSeed+string(u32be(lo))+string(u32be(hi)), 32)
	if err != nil {
		return seed, err
	}
	copy(seed[:], k)
	clear(k)
	return seed, nil
}

// pairNeg reports whether client self subtracts (rather than adds) the mask
// it shares with peer: the smaller ID adds it, the larger subtracts it, so
// the two cancel in the sum.
func pairNeg(self, peer uint32) bool { return self > peer }
