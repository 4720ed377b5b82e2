package secagg

import (
	"crypto/ed25519"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func mustIs(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got %v, want %v", what, err, want)
	}
}

// must(f())(t, "f") returns f's value, failing the test on f's error.
func must[T any](v T, err error) func(t *testing.T, what string) T {
	return func(t *testing.T, what string) T {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return v
	}
}

func noErr(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// nonNeighbour returns a participant that is not adjacent to id.
func nonNeighbour(t *testing.T, s *sim, id uint32) uint32 {
	t.Helper()
	nb := s.clients[id].Neighbours()
	for _, j := range s.ids {
		if j != id && !slices.Contains(nb, j) {
			return j
		}
	}
	t.Fatal("complete graph")
	return 0
}

// TestRejections walks a round of 8 clients (k=4, t=3, one client dropping
// after ShareKeys) and, at every stage, first offers the server and the
// clients forged, replayed, out-of-order, misaddressed, duplicate and
// malformed messages. Each must be refused with its sentinel error and leave
// the state unchanged: the round then completes with the exact sum.
func TestRejections(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	s := newSim(t, rng, 8, 4, 3, 50)
	srv, ids, cl := s.srv, s.ids, s.clients
	a, b := ids[0], ids[1]
	dropped := ids[7]

	// another round with the same participants and keys: replay source
	other := *s.cfg
	other.RoundID = []byte("another round")
	otherClient := must(NewClient(&other, a, s.signers[a], nil))(t, "NewClient")
	replayAdv := must(otherClient.AdvertiseKeys())(t, "AdvertiseKeys")

	// ---- stage 0: AdvertiseKeys
	mustIs(t, "client ShareKeys before AdvertiseKeys", func() error { _, err := cl[a].ShareKeys(&KeyList{}); return err }(), ErrOutOfOrder)
	mustIs(t, "server AddShareKeys in stage 0", srv.AddShareKeys(&ShareKeys{Round: s.srv.p.digest, From: a}), ErrOutOfOrder)
	mustIs(t, "replayed advertisement", srv.AddAdvertiseKeys(replayAdv), ErrWrongRound)
	relabeled := *replayAdv
	relabeled.Round = srv.p.digest
	mustIs(t, "replay relabeled with this round", srv.AddAdvertiseKeys(&relabeled), ErrForged)
	adv := map[uint32]*AdvertiseKeys{}
	for _, id := range ids {
		adv[id] = must(cl[id].AdvertiseKeys())(t, "AdvertiseKeys")
	}
	_, err := cl[a].AdvertiseKeys()
	mustIs(t, "AdvertiseKeys twice", err, ErrOutOfOrder)
	forged := *adv[a]
	forged.Sig[5] ^= 1
	mustIs(t, "forged signature", srv.AddAdvertiseKeys(&forged), ErrForged)
	swapped := *adv[a]
	swapped.MaskKey = adv[b].MaskKey
	mustIs(t, "key substituted", srv.AddAdvertiseKeys(&swapped), ErrForged)
	impostor := *adv[a]
	impostor.From = 12345
	mustIs(t, "unknown sender", srv.AddAdvertiseKeys(&impostor), ErrUnknownSender)
	lowOrder := &AdvertiseKeys{Round: srv.p.digest, From: a, EncKey: [32]byte{1}, MaskKey: adv[a].MaskKey} // u=1 has order 4
	copy(lowOrder.Sig[:], ed25519.Sign(s.signers[a], advertiseSigned(lowOrder)))
	mustIs(t, "low-order key", srv.AddAdvertiseKeys(lowOrder), ErrMalformed)
	for _, id := range ids {
		noErr(t, "AddAdvertiseKeys", srv.AddAdvertiseKeys(adv[id]))
	}
	mustIs(t, "duplicate advertisement", srv.AddAdvertiseKeys(adv[a]), ErrDuplicate)
	if p := srv.Pending(); len(p) != 0 {
		t.Fatalf("pending after all advertised: %v", p)
	}
	_, err = srv.KeyList(a)
	mustIs(t, "KeyList before EndAdvertiseKeys", err, ErrOutOfOrder)
	must(srv.EndAdvertiseKeys())(t, "EndAdvertiseKeys")
	mustIs(t, "late advertisement", srv.AddAdvertiseKeys(adv[a]), ErrOutOfOrder)
	_, err = srv.EndAdvertiseKeys()
	mustIs(t, "EndAdvertiseKeys twice", err, ErrOutOfOrder)

	// ---- stage 1: ShareKeys
	kl := map[uint32]*KeyList{}
	for _, id := range ids {
		kl[id] = must(srv.KeyList(id))(t, "KeyList")
	}
	c := cl[a]
	_, err = c.ShareKeys(kl[b])
	mustIs(t, "KeyList of another client", err, ErrWrongRecipient)
	bad := *kl[a]
	bad.Keys = slices.Clone(kl[a].Keys)
	bad.Keys[0].Sig[0] ^= 0x80
	_, err = c.ShareKeys(&bad)
	mustIs(t, "KeyList with forged entry", err, ErrForged)
	bad.Keys = append(slices.Clone(kl[a].Keys), kl[a].Keys[0])
	_, err = c.ShareKeys(&bad)
	mustIs(t, "KeyList with duplicate entry", err, ErrDuplicate)
	bad.Keys = append(slices.Clone(kl[a].Keys), *adv[nonNeighbour(t, s, a)])
	_, err = c.ShareKeys(&bad)
	mustIs(t, "KeyList with a non-neighbour", err, ErrWrongRecipient)
	bad.Keys = kl[a].Keys[:1]
	_, err = c.ShareKeys(&bad)
	mustIs(t, "KeyList below threshold", err, ErrTooFewSurvivors)
	bad = *kl[a]
	bad.Round = other.digestForTest(t)
	_, err = c.ShareKeys(&bad)
	mustIs(t, "KeyList from another round", err, ErrWrongRound)

	sk := map[uint32]*ShareKeys{}
	for _, id := range ids {
		sk[id] = must(cl[id].ShareKeys(kl[id]))(t, "ShareKeys")
	}
	_, err = c.ShareKeys(kl[a])
	mustIs(t, "ShareKeys twice", err, ErrOutOfOrder)
	short := *sk[a]
	short.Shares = sk[a].Shares[1:]
	mustIs(t, "missing share", srv.AddShareKeys(&short), ErrMalformed)
	dup := *sk[a]
	dup.Shares = slices.Clone(sk[a].Shares)
	dup.Shares[1] = dup.Shares[0]
	mustIs(t, "duplicate recipient", srv.AddShareKeys(&dup), ErrDuplicate)
	mis := *sk[a]
	mis.Shares = slices.Clone(sk[a].Shares)
	mis.Shares[0].Peer = nonNeighbour(t, s, a)
	mustIs(t, "share to a non-neighbour", srv.AddShareKeys(&mis), ErrWrongRecipient)
	for _, id := range ids {
		noErr(t, "AddShareKeys", srv.AddShareKeys(sk[id]))
	}
	mustIs(t, "second ShareKeys", srv.AddShareKeys(sk[a]), ErrDuplicate)
	must(srv.EndShareKeys())(t, "EndShareKeys")

	// ---- stage 2: MaskedInput (dropped never sends)
	sl := map[uint32]*ShareList{}
	for _, id := range ids {
		sl[id] = must(srv.ShareList(id))(t, "ShareList")
	}
	_, err = c.MaskedInput(sl[a], s.inputs[a][:10])
	mustIs(t, "input of wrong length", err, ErrMalformed)
	tampered := *sl[a]
	tampered.Shares = slices.Clone(sl[a].Shares)
	tampered.Shares[0].Ciphertext[40] ^= 1
	_, err = c.MaskedInput(&tampered, s.inputs[a])
	mustIs(t, "tampered share ciphertext", err, ErrForged)
	redirected := *sl[a]
	redirected.Shares = slices.Clone(sl[a].Shares)
	redirected.Shares[0], redirected.Shares[1] = EncryptedShare{Peer: sl[a].Shares[1].Peer, Ciphertext: sl[a].Shares[0].Ciphertext}, EncryptedShare{Peer: sl[a].Shares[0].Peer, Ciphertext: sl[a].Shares[1].Ciphertext}
	_, err = c.MaskedInput(&redirected, s.inputs[a])
	mustIs(t, "ciphertexts swapped between senders", err, ErrForged)
	_, err = c.MaskedInput(sl[b], s.inputs[a])
	mustIs(t, "ShareList of another client", err, ErrWrongRecipient)
	mi := map[uint32]*MaskedInput{}
	for _, id := range ids {
		if id != dropped {
			mi[id] = must(cl[id].MaskedInput(sl[id], s.inputs[id]))(t, "MaskedInput")
		}
	}
	wrongLen := &MaskedInput{Round: srv.p.digest, From: a, Y: make([]uint32, 49)}
	mustIs(t, "masked input of wrong length", srv.AddMaskedInput(wrongLen), ErrMalformed)
	replay := *mi[a]
	replay.Round = other.digestForTest(t)
	mustIs(t, "masked input of another round", srv.AddMaskedInput(&replay), ErrWrongRound)
	for _, m := range mi {
		noErr(t, "AddMaskedInput", srv.AddMaskedInput(m))
	}
	mustIs(t, "masked input twice (would double-count)", srv.AddMaskedInput(mi[a]), ErrDuplicate)
	if p := srv.Pending(); !slices.Equal(p, []uint32{dropped}) {
		t.Fatalf("pending %v, want [%d]", p, dropped)
	}
	u3 := must(srv.EndMaskedInput())(t, "EndMaskedInput")

	// ---- stage 3: ConsistencyCheck
	list := must(srv.SurvivorList())(t, "SurvivorList")
	_, err = cl[dropped].ConsistencyCheck(list)
	mustIs(t, "ConsistencyCheck by a client that sent no masked input", err, ErrOutOfOrder)
	unsorted := &SurvivorList{Round: list.Round, Survivors: slices.Clone(u3)}
	unsorted.Survivors[0], unsorted.Survivors[1] = unsorted.Survivors[1], unsorted.Survivors[0]
	_, err = c.ConsistencyCheck(unsorted)
	mustIs(t, "unsorted survivor list", err, ErrMalformed)
	without := &SurvivorList{Round: list.Round, Survivors: slices.DeleteFunc(slices.Clone(u3), func(id uint32) bool { return id == a })}
	_, err = c.ConsistencyCheck(without)
	mustIs(t, "survivor list without the client", err, ErrExcluded)
	cc := map[uint32]*ConsistencyCheck{}
	for _, id := range u3 {
		cc[id] = must(cl[id].ConsistencyCheck(list))(t, "ConsistencyCheck")
	}
	// a signature over a different survivor set (what a client shown another
	// list would sign) must not count
	otherSet := survivorsHash(without.Survivors)
	wrongSet := signConsistency(s.signers[b], &srv.p.digest, b, &otherSet)
	mustIs(t, "signature over another survivor set", srv.AddConsistencyCheck(&wrongSet), ErrForged)
	mustIs(t, "consistency check from a dropped client", srv.AddConsistencyCheck(&ConsistencyCheck{Round: srv.p.digest, From: dropped}), ErrUnknownSender)
	for _, id := range u3 {
		noErr(t, "AddConsistencyCheck", srv.AddConsistencyCheck(cc[id]))
	}
	mustIs(t, "consistency check twice", srv.AddConsistencyCheck(cc[a]), ErrDuplicate)
	u4 := must(srv.EndConsistencyCheck())(t, "EndConsistencyCheck")

	// ---- stage 4: Unmask
	sg := map[uint32]*SignatureList{}
	for _, id := range u4 {
		sg[id] = must(srv.SignatureList(id))(t, "SignatureList")
	}
	forgedSig := *sg[a]
	forgedSig.Checks = slices.Clone(sg[a].Checks)
	forgedSig.Checks[0].Sig[9] ^= 4
	_, err = c.Unmask(&forgedSig)
	mustIs(t, "forged consistency signature", err, ErrForged)
	few := *sg[a]
	few.Checks = sg[a].Checks[:1]
	_, err = c.Unmask(&few)
	mustIs(t, "too few consistency signatures", err, ErrTooFewSurvivors)
	um := map[uint32]*Unmask{}
	for _, id := range u4 {
		um[id] = must(cl[id].Unmask(sg[id]))(t, "Unmask")
	}
	_, err = c.Unmask(sg[a])
	mustIs(t, "Unmask twice", err, ErrOutOfOrder)

	// a holder of the dropped client's shares
	var h uint32
	for _, id := range u4 {
		if slices.Contains(cl[id].Neighbours(), dropped) {
			h = id
			break
		}
	}
	m := um[h]
	di := slices.IndexFunc(m.Shares, func(e UnmaskShare) bool { return e.Owner == dropped })
	si := slices.IndexFunc(m.Shares, func(e UnmaskShare) bool { return e.Owner != dropped && e.Owner != h })
	both := *m
	both.Shares = append(slices.Clone(m.Shares), UnmaskShare{Owner: dropped, Kind: SeedShare, Value: m.Shares[di].Value})
	mustIs(t, "both shares of one client", srv.AddUnmask(&both), ErrDuplicate)
	seedOfDropped := *m
	seedOfDropped.Shares = slices.Clone(m.Shares)
	seedOfDropped.Shares[di].Kind = SeedShare
	mustIs(t, "seed share of a dropped client", srv.AddUnmask(&seedOfDropped), ErrMalformed)
	keyOfSurvivor := *m
	keyOfSurvivor.Shares = slices.Clone(m.Shares)
	keyOfSurvivor.Shares[si].Kind = KeyShare
	mustIs(t, "key share of a survivor", srv.AddUnmask(&keyOfSurvivor), ErrMalformed)
	missing := *m
	missing.Shares = m.Shares[1:]
	mustIs(t, "missing shares", srv.AddUnmask(&missing), ErrMalformed)
	stray := *m
	stray.Shares = slices.Clone(m.Shares)
	stray.Shares[si].Owner = nonNeighbour(t, s, h)
	mustIs(t, "share of a client it does not hold", srv.AddUnmask(&stray), ErrWrongRecipient)
	mustIs(t, "SignatureList after its stage", func() error { _, err := srv.KeyList(a); return err }(), ErrOutOfOrder)
	for _, id := range u4 {
		noErr(t, "AddUnmask", srv.AddUnmask(um[id]))
	}
	mustIs(t, "Unmask twice at the server", srv.AddUnmask(um[a]), ErrDuplicate)
	res := must(srv.Finish())(t, "Finish")
	if !slices.Equal(res.Survivors, u3) || !slices.Equal(res.Sum, s.plainSum(u3)) {
		t.Fatal("sum after rejected messages differs from the plain sum")
	}
	_, err = srv.Finish()
	mustIs(t, "Finish twice", err, ErrOutOfOrder)
}

func (c *Config) digestForTest(t *testing.T) [32]byte {
	t.Helper()
	p, err := c.compile()
	if err != nil {
		t.Fatal(err)
	}
	return p.digest
}

// TestBadSharesDetected: a holder that reveals a wrong share makes the
// reconstruction fail its integrity check instead of producing a wrong sum,
// both for a survivor's seed and for a dropped client's masking key.
func TestBadSharesDetected(t *testing.T) {
	for _, dropAfterShare := range []bool{false, true} {
		rng := rand.New(rand.NewPCG(11, 12))
		s := newSim(t, rng, 5, 4, 3, 8)
		if dropAfterShare {
			s.drop[s.ids[4]] = 2
		}
		srv, cl := s.srv, s.clients
		for _, id := range s.ids {
			noErr(t, "AddAdvertiseKeys", srv.AddAdvertiseKeys(must(cl[id].AdvertiseKeys())(t, "AdvertiseKeys")))
		}
		next := must(srv.EndAdvertiseKeys())(t, "EndAdvertiseKeys")
		for _, id := range next {
			kl := must(srv.KeyList(id))(t, "KeyList")
			noErr(t, "AddShareKeys", srv.AddShareKeys(must(cl[id].ShareKeys(kl))(t, "ShareKeys")))
		}
		next = must(srv.EndShareKeys())(t, "EndShareKeys")
		for _, id := range next {
			if s.dropped(id, 2) {
				continue
			}
			sl := must(srv.ShareList(id))(t, "ShareList")
			noErr(t, "AddMaskedInput", srv.AddMaskedInput(must(cl[id].MaskedInput(sl, s.inputs[id]))(t, "MaskedInput")))
		}
		next = must(srv.EndMaskedInput())(t, "EndMaskedInput")
		list := must(srv.SurvivorList())(t, "SurvivorList")
		for _, id := range next {
			noErr(t, "AddConsistencyCheck", srv.AddConsistencyCheck(must(cl[id].ConsistencyCheck(list))(t, "ConsistencyCheck")))
		}
		next = must(srv.EndConsistencyCheck())(t, "EndConsistencyCheck")
		for k, id := range next {
			sg := must(srv.SignatureList(id))(t, "SignatureList")
			m := must(cl[id].Unmask(sg))(t, "Unmask")
			if k == 0 { // the lowest holder's shares are always among the t used
				for i := range m.Shares {
					// corrupt the dropped client's key share, or else the seeds
					if (m.Shares[i].Kind == KeyShare) == dropAfterShare {
						m.Shares[i].Value[3] ^= 1
					}
				}
			}
			noErr(t, "AddUnmask", srv.AddUnmask(m))
		}
		_, err := srv.Finish()
		mustIs(t, "Finish with a corrupted share", err, ErrBadShares)
		if want := map[bool]string{false: "seed", true: "masking key"}[dropAfterShare]; !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not name the %s", err, want)
		}
	}
}
