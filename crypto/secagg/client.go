package secagg

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"slices"
)

type clientStage int

const (
	clientNew clientStage = iota
	clientAdvertised
	clientShared
	clientMasked
	clientChecked
	clientDone
)

// Client is one participant's side of a round. Drive it with one method per
// stage, in order, feeding each the server's message for that stage:
//
//	AdvertiseKeys() -> ShareKeys(KeyList) -> MaskedInput(ShareList, x)
//	  -> ConsistencyCheck(SurvivorList) -> Unmask(SignatureList)
//
// A method that returns an error leaves the client unchanged, so the caller
// may retry it with a correct message; a method called out of turn returns
// ErrOutOfOrder. A Client is not safe for concurrent use.
type Client struct {
	p      *params
	id     uint32
	idx    int
	signer ed25519.PrivateKey
	rand   io.Reader
	stage  clientStage

	encKey, maskKey *ecdh.PrivateKey
	seed            [32]byte // b, the self-mask seed

	keys      map[uint32]*AdvertiseKeys // neighbours that advertised
	ownSeed   share                     // own share of own b
	held      map[uint32][2]share       // neighbour -> its shares {s_sk, b} for us
	survivors map[uint32]bool           // U3
	u3Hash    [32]byte
}

// NewClient returns the client id of the round described by cfg. signer is
// the client's Ed25519 identity key and must match its Participant entry.
// rand supplies every secret (keys, seeds, polynomials, nonces); nil means
// crypto/rand.Reader.
func NewClient(cfg *Config, id uint32, signer ed25519.PrivateKey, rnd io.Reader) (*Client, error) {
	p, err := cfg.compile()
	if err != nil {
		return nil, fmt.Errorf("secagg.NewClient: %w", err)
	}
	return newClient(p, id, signer, rnd)
}

// Round is a Config checked and compiled once (Config.Compile), for many
// clients of one round in one process: each client NewClient makes
// compiles the whole participant list, neighbour graph and digest for
// itself (O(n) memory and time per client, O(n²) for a process that
// runs all n), while the clients of NewRoundClient share them, read only.
type Round struct{ p *params }

// Compile checks c and compiles it for NewRoundClient.
func (c *Config) Compile() (*Round, error) {
	p, err := c.compile()
	if err != nil {
		return nil, err
	}
	return &Round{p: p}, nil
}

// NewRoundClient is NewClient over a compiled round; any number of
// clients may share r, concurrently.
func NewRoundClient(r *Round, id uint32, signer ed25519.PrivateKey, rnd io.Reader) (*Client, error) {
	return newClient(r.p, id, signer, rnd)
}

func newClient(p *params, id uint32, signer ed25519.PrivateKey, rnd io.Reader) (*Client, error) {
	idx, ok := p.index[id]
	if !ok {
		return nil, fmt.Errorf("secagg.NewClient: %w: %d is not a participant", ErrInvalidConfig, id)
	}
	if len(signer) != ed25519.PrivateKeySize || !p.keys[idx].Equal(signer.Public()) {
		return nil, fmt.Errorf("secagg.NewClient: %w: signer does not match the signing key of %d", ErrInvalidConfig, id)
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	return &Client{p: p, id: id, idx: idx, signer: signer, rand: rnd}, nil
}

// ID returns the client's ID.
func (c *Client) ID() uint32 { return c.id }

// Neighbours returns the IDs of the client's neighbours in the graph.
func (c *Client) Neighbours() []uint32 { return c.p.neighbourIDs(c.idx) }

func (c *Client) errf(method string, sentinel error, format string, a ...any) error {
	return fmt.Errorf("secagg.Client.%s: %w: %s", method, sentinel, fmt.Sprintf(format, a...))
}

func (c *Client) checkStage(method string, want clientStage) error {
	if c.stage != want {
		return c.errf(method, ErrOutOfOrder, "client %d is at stage %d, %s needs stage %d", c.id, c.stage, method, want)
	}
	return nil
}

func (c *Client) checkRound(method string, round *[32]byte) error {
	if *round != c.p.digest {
		return c.errf(method, ErrWrongRound, "round digest %x, want %x", round[:6], c.p.digest[:6])
	}
	return nil
}

// AdvertiseKeys generates the client's fresh key pairs and self-mask seed
// and returns their signed advertisement.
func (c *Client) AdvertiseKeys() (*AdvertiseKeys, error) {
	const method = "AdvertiseKeys"
	if err := c.checkStage(method, clientNew); err != nil {
		return nil, err
	}
	encKey, err := newX25519(c.rand)
	if err != nil {
		return nil, fmt.Errorf("secagg.Client.AdvertiseKeys: %w", err)
	}
	maskKey, err := newX25519(c.rand)
	if err != nil {
		return nil, fmt.Errorf("secagg.Client.AdvertiseKeys: %w", err)
	}
	var seed [32]byte
	if _, err := io.ReadFull(c.rand, seed[:]); err != nil {
		return nil, fmt.Errorf("secagg.Client.AdvertiseKeys: %w", err)
	}
	m := &AdvertiseKeys{Round: c.p.digest, From: c.id}
	copy(m.EncKey[:], encKey.PublicKey().Bytes())
	copy(m.MaskKey[:], maskKey.PublicKey().Bytes())
	m.SeedCommit = seedCommit(&c.p.digest, c.id, &seed)
	copy(m.Sig[:], ed25519.Sign(c.signer, advertiseSigned(m)))
	c.encKey, c.maskKey, c.seed = encKey, maskKey, seed
	c.stage = clientAdvertised
	return m, nil
}

// ShareKeys verifies the neighbours' advertisements, splits the client's
// masking key s_sk and seed b into t-of-(k+1) Shamir shares, and returns
// each neighbour's shares encrypted to it.
func (c *Client) ShareKeys(in *KeyList) (*ShareKeys, error) {
	const method = "ShareKeys"
	if err := c.checkStage(method, clientAdvertised); err != nil {
		return nil, err
	}
	if err := c.checkRound(method, &in.Round); err != nil {
		return nil, err
	}
	if in.To != c.id {
		return nil, c.errf(method, ErrWrongRecipient, "KeyList for %d received by %d", in.To, c.id)
	}
	keys := make(map[uint32]*AdvertiseKeys, len(in.Keys))
	for i := range in.Keys {
		a := &in.Keys[i]
		if err := c.checkRound(method, &a.Round); err != nil {
			return nil, err
		}
		j, ok := c.p.index[a.From]
		switch {
		case !ok:
			return nil, c.errf(method, ErrUnknownSender, "advertisement from %d", a.From)
		case !c.p.g.adjacent(c.idx, j):
			return nil, c.errf(method, ErrWrongRecipient, "advertisement from %d, not a neighbour of %d", a.From, c.id)
		case keys[a.From] != nil:
			return nil, c.errf(method, ErrDuplicate, "two advertisements from %d", a.From)
		case !ed25519.Verify(c.p.keys[j], advertiseSigned(a), a.Sig[:]):
			return nil, c.errf(method, ErrForged, "advertisement of %d", a.From)
		}
		keys[a.From] = a
	}
	if len(keys)+1 < c.p.t {
		return nil, c.errf(method, ErrTooFewSurvivors, "%d neighbours advertised, threshold %d", len(keys), c.p.t)
	}

	peers := make([]uint32, 0, len(keys))
	for id := range keys {
		peers = append(peers, id)
	}
	slices.Sort(peers)
	xs := make([]uint64, 0, len(peers)+1)
	for _, id := range peers {
		xs = append(xs, uint64(c.p.index[id])+1)
	}
	xs = append(xs, uint64(c.idx)+1)
	var skBytes [32]byte
	copy(skBytes[:], c.maskKey.Bytes())
	skShares, err := shamirSplit(&skBytes, c.p.t, xs, c.rand)
	clear(skBytes[:])
	if err != nil {
		return nil, fmt.Errorf("secagg.Client.ShareKeys: %w", err)
	}
	seedShares, err := shamirSplit(&c.seed, c.p.t, xs, c.rand)
	if err != nil {
		return nil, fmt.Errorf("secagg.Client.ShareKeys: %w", err)
	}
	out := &ShareKeys{Round: c.p.digest, From: c.id, Shares: make([]EncryptedShare, len(peers))}
	for i, id := range peers {
		secret, err := agree(c.encKey, &keys[id].EncKey)
		if err != nil {
			return nil, c.errf(method, ErrMalformed, "encryption key of %d: %v", id, err)
		}
		ct, err := sealShares(secret, &c.p.digest, c.id, id, &skShares[i], &seedShares[i], c.rand)
		clear(secret)
		if err != nil {
			return nil, fmt.Errorf("secagg.Client.ShareKeys: %w", err)
		}
		out.Shares[i] = EncryptedShare{Peer: id, Ciphertext: ct}
	}
	// keep private copies of the advertisements we rely on
	for id, a := range keys {
		cp := *a
		keys[id] = &cp
	}
	n := len(peers)
	c.keys, c.ownSeed = keys, seedShares[n] // our own share of s_sk is never revealed
	c.stage = clientShared
	return out, nil
}

// MaskedInput decrypts the shares the neighbours sent, and returns
// y = x + PRG(b) + sum over those neighbours v of +-PRG(s_uv) mod 2^32,
// where s_uv is agreed from the masking keys, added by the smaller ID and
// subtracted by the larger. x (length Dim) is not modified.
func (c *Client) MaskedInput(in *ShareList, x []uint32) (*MaskedInput, error) {
	return c.maskedInput(in, x, false)
}

// MaskInPlace is MaskedInput without a copy of the input: the masks are
// added into x itself, which becomes the message's Y (and is the masked
// vector from then on). A client with a large input (a model update of
// hundreds of MB) holds one vector instead of two.
func (c *Client) MaskInPlace(in *ShareList, x []uint32) (*MaskedInput, error) {
	return c.maskedInput(in, x, true)
}

func (c *Client) maskedInput(in *ShareList, x []uint32, inPlace bool) (*MaskedInput, error) {
	const method = "MaskedInput"
	if err := c.checkStage(method, clientShared); err != nil {
		return nil, err
	}
	if err := c.checkRound(method, &in.Round); err != nil {
		return nil, err
	}
	if in.To != c.id {
		return nil, c.errf(method, ErrWrongRecipient, "ShareList for %d received by %d", in.To, c.id)
	}
	if len(x) != c.p.dim {
		return nil, c.errf(method, ErrMalformed, "input has %d elements, want %d", len(x), c.p.dim)
	}
	held := make(map[uint32][2]share, len(in.Shares))
	terms := make([]maskTerm, 0, len(in.Shares)+1)
	terms = append(terms, maskTerm{seed: c.seed})
	for i := range in.Shares {
		e := &in.Shares[i]
		a := c.keys[e.Peer]
		if a == nil {
			if _, ok := c.p.index[e.Peer]; !ok {
				return nil, c.errf(method, ErrUnknownSender, "shares from %d", e.Peer)
			}
			return nil, c.errf(method, ErrWrongRecipient, "shares from %d, not an advertised neighbour", e.Peer)
		}
		if _, dup := held[e.Peer]; dup {
			return nil, c.errf(method, ErrDuplicate, "two ciphertexts from %d", e.Peer)
		}
		secret, err := agree(c.encKey, &a.EncKey)
		if err != nil {
			return nil, c.errf(method, ErrMalformed, "encryption key of %d: %v", e.Peer, err)
		}
		sk, b, err := openShares(secret, &c.p.digest, e.Peer, c.id, &e.Ciphertext)
		clear(secret)
		if err != nil {
			return nil, fmt.Errorf("secagg.Client.MaskedInput: %w", err)
		}
		held[e.Peer] = [2]share{sk, b}
		secret, err = agree(c.maskKey, &a.MaskKey)
		if err != nil {
			return nil, c.errf(method, ErrMalformed, "masking key of %d: %v", e.Peer, err)
		}
		seed, err := pairSeed(secret, &c.p.digest, c.id, e.Peer)
		clear(secret)
		if err != nil {
			return nil, fmt.Errorf("secagg.Client.MaskedInput: %w", err)
		}
		terms = append(terms, maskTerm{seed: seed, neg: pairNeg(c.id, e.Peer)})
	}
	if len(held)+1 < c.p.t {
		return nil, c.errf(method, ErrTooFewSurvivors, "%d neighbours shared keys, threshold %d", len(held), c.p.t)
	}
	y := x
	if !inPlace {
		y = slices.Clone(x)
	}
	applyMasks(y, terms)
	for i := range terms {
		clear(terms[i].seed[:])
	}
	c.held = held
	c.stage = clientMasked
	return &MaskedInput{Round: c.p.digest, From: c.id, Y: y}, nil
}

// ConsistencyCheck validates the survivor set U3 the server announced and
// signs it. A client not in U3 gets ErrExcluded and must stop.
func (c *Client) ConsistencyCheck(in *SurvivorList) (*ConsistencyCheck, error) {
	const method = "ConsistencyCheck"
	if err := c.checkStage(method, clientMasked); err != nil {
		return nil, err
	}
	if err := c.checkRound(method, &in.Round); err != nil {
		return nil, err
	}
	set := make(map[uint32]bool, len(in.Survivors))
	live := 1 // neighbourhood members in U3, counting ourselves
	for i, id := range in.Survivors {
		if i > 0 && id <= in.Survivors[i-1] {
			return nil, c.errf(method, ErrMalformed, "survivor list not strictly ascending")
		}
		if _, ok := c.p.index[id]; !ok {
			return nil, c.errf(method, ErrUnknownSender, "survivor %d is not a participant", id)
		}
		set[id] = true
		if id == c.id {
			continue
		}
		if _, ok := c.held[id]; ok {
			live++
		} else if c.p.g.adjacent(c.idx, c.p.index[id]) {
			return nil, c.errf(method, ErrMalformed, "neighbour %d listed as survivor but sent no shares", id)
		}
	}
	if !set[c.id] {
		return nil, c.errf(method, ErrExcluded, "%d is not in the survivor set", c.id)
	}
	if len(in.Survivors) < c.p.minSurv || live < c.p.t {
		return nil, c.errf(method, ErrTooFewSurvivors, "%d survivors (%d in the neighbourhood), need %d (%d)", len(in.Survivors), live, c.p.minSurv, c.p.t)
	}
	h := survivorsHash(in.Survivors)
	m := signConsistency(c.signer, &c.p.digest, c.id, &h)
	c.survivors, c.u3Hash = set, h
	c.stage = clientChecked
	return &m, nil
}

// Unmask verifies the neighbours' signatures on the same survivor set (at
// least t-1 of them, plus the client's own) and reveals, for itself and each
// neighbour that sent it shares, exactly one share: of b if the neighbour
// survived, of s_sk if it dropped. It can run only once.
func (c *Client) Unmask(in *SignatureList) (*Unmask, error) {
	const method = "Unmask"
	if err := c.checkStage(method, clientChecked); err != nil {
		return nil, err
	}
	if err := c.checkRound(method, &in.Round); err != nil {
		return nil, err
	}
	if in.To != c.id {
		return nil, c.errf(method, ErrWrongRecipient, "SignatureList for %d received by %d", in.To, c.id)
	}
	seen := make(map[uint32]bool, len(in.Checks))
	for i := range in.Checks {
		s := &in.Checks[i]
		if err := c.checkRound(method, &s.Round); err != nil {
			return nil, err
		}
		j, ok := c.p.index[s.From]
		switch {
		case !ok:
			return nil, c.errf(method, ErrUnknownSender, "signature from %d", s.From)
		case !c.p.g.adjacent(c.idx, j):
			return nil, c.errf(method, ErrWrongRecipient, "signature from %d, not a neighbour of %d", s.From, c.id)
		case seen[s.From]:
			return nil, c.errf(method, ErrDuplicate, "two signatures from %d", s.From)
		case !c.survivors[s.From]:
			return nil, c.errf(method, ErrMalformed, "signature from %d, not a survivor", s.From)
		case !ed25519.Verify(c.p.keys[j], consistencySigned(&c.p.digest, s.From, &c.u3Hash), s.Sig[:]):
			return nil, c.errf(method, ErrForged, "consistency signature of %d", s.From)
		}
		seen[s.From] = true
	}
	if len(seen)+1 < c.p.t {
		return nil, c.errf(method, ErrTooFewSurvivors, "%d neighbours confirmed the survivor set, threshold %d", len(seen), c.p.t)
	}
	out := &Unmask{Round: c.p.digest, From: c.id, Shares: make([]UnmaskShare, 0, len(c.held)+1)}
	add := func(owner uint32, kind ShareKind, s *share) {
		u := UnmaskShare{Owner: owner, Kind: kind}
		s.appendTo(u.Value[:0])
		out.Shares = append(out.Shares, u)
	}
	add(c.id, SeedShare, &c.ownSeed)
	peers := make([]uint32, 0, len(c.held))
	for id := range c.held {
		peers = append(peers, id)
	}
	slices.Sort(peers)
	for _, id := range peers {
		h := c.held[id]
		if c.survivors[id] {
			add(id, SeedShare, &h[1])
		} else {
			add(id, KeyShare, &h[0])
		}
	}
	c.wipe()
	c.stage = clientDone
	return out, nil
}

// wipe forgets the client's secrets once they are no longer needed.
func (c *Client) wipe() {
	clear(c.seed[:])
	c.ownSeed = share{}
	for id := range c.held {
		delete(c.held, id)
	}
	c.encKey, c.maskKey = nil, nil
}
