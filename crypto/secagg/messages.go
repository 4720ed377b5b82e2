package secagg

// The messages of one round, in the order they flow. Client-to-server
// messages carry From; server-to-client messages carry To (the server relays
// to each client only what concerns its neighbourhood). Every message carries
// Round, the digest of the round's Config, and is encoded by MarshalBinary
// (see wire.go for the layout).

// AdvertiseKeys is stage 0, client -> server: the client's two fresh X25519
// public keys, EncKey (c) for the share encryption and MaskKey (s) for the
// pairwise masks, and a hash commitment to its self-mask seed b, signed with
// its Ed25519 identity key. The commitment lets the server check the seed it
// reconstructs from Shamir shares (as MaskKey checks the masking key), so a
// wrong share fails the round with ErrBadShares instead of corrupting the sum.
type AdvertiseKeys struct {
	Round      [32]byte
	From       uint32
	EncKey     [32]byte
	MaskKey    [32]byte
	SeedCommit [32]byte
	Sig        [64]byte
}

// KeyList is stage 0's reply, server -> client To: the AdvertiseKeys of To's
// neighbours that advertised.
type KeyList struct {
	Round [32]byte
	To    uint32
	Keys  []AdvertiseKeys // each entry's Round is the list's Round
}

// ShareCiphertextSize is the size of one encrypted pair of shares: a 12-byte
// AES-GCM nonce, two 40-byte Shamir shares, a 16-byte tag.
const ShareCiphertextSize = 12 + 2*ShareSize + 16

// EncryptedShare is the AES-GCM encryption, from one client to one
// neighbour, of the neighbour's Shamir shares of the sender's masking key
// s_sk and self-mask seed b.
type EncryptedShare struct {
	// Peer is the recipient in ShareKeys and the sender in ShareList.
	Peer       uint32
	Ciphertext [ShareCiphertextSize]byte
}

// ShareKeys is stage 1, client -> server: one EncryptedShare for each
// neighbour in the client's KeyList.
type ShareKeys struct {
	Round  [32]byte
	From   uint32
	Shares []EncryptedShare
}

// ShareList is stage 1's reply, server -> client To: the EncryptedShares
// addressed to To by its neighbours that completed ShareKeys.
type ShareList struct {
	Round  [32]byte
	To     uint32
	Shares []EncryptedShare
}

// MaskedInput is stage 2, client -> server: the masked vector
// y = x + PRG(b) + sum over neighbours v in ShareList of +-PRG(s_uv), mod 2^32.
// It is not signed; the transport authenticates the sender.
type MaskedInput struct {
	Round [32]byte
	From  uint32
	Y     []uint32
}

// SurvivorList is stage 2's reply, server -> every client: U3, the sorted
// IDs of the clients whose masked inputs are in the sum.
type SurvivorList struct {
	Round     [32]byte
	Survivors []uint32
}

// ConsistencyCheck is stage 3, client -> server: the client's signature over
// the round digest and the SurvivorList it received.
type ConsistencyCheck struct {
	Round [32]byte
	From  uint32
	Sig   [64]byte
}

// SignatureList is stage 3's reply, server -> client To: the
// ConsistencyChecks of To's neighbours that are in the survivor set.
type SignatureList struct {
	Round  [32]byte
	To     uint32
	Checks []ConsistencyCheck // each entry's Round is the list's Round
}

// ShareKind says which secret an UnmaskShare is a share of.
type ShareKind uint8

const (
	// SeedShare is a share of the self-mask seed b of a client that survived.
	SeedShare ShareKind = 1
	// KeyShare is a share of the masking key s_sk of a client that dropped.
	KeyShare ShareKind = 2
)

// UnmaskShare is one decrypted Shamir share revealed to the server.
type UnmaskShare struct {
	Owner uint32 // whose secret this is a share of
	Kind  ShareKind
	Value [ShareSize]byte
}

// Unmask is stage 4, client -> server: for the client itself and each
// neighbour in its ShareList, exactly one share: of b if the neighbour is a
// survivor, of s_sk if it dropped.
type Unmask struct {
	Round  [32]byte
	From   uint32
	Shares []UnmaskShare
}
