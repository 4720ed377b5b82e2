package secagg

import (
	"crypto/ecdh"
	"fmt"
	"runtime"
	"slices"
	"sync"
)

// Result is the outcome of a round.
type Result struct {
	// Sum is the sum modulo 2^32 of the inputs of exactly the Survivors.
	Sum []uint32
	// Survivors is U3, the clients whose inputs are in Sum, ascending.
	Survivors []uint32
}

// AddUnmask accepts a client's revealed shares. The message must hold, for
// the client itself and for each neighbour whose ciphertext it received,
// exactly one share: a SeedShare for a survivor, a KeyShare for a client
// that dropped; never both kinds for one owner.
func (s *Server) AddUnmask(m *Unmask) error {
	const method = "AddUnmask"
	if err := s.checkStage(method, StageUnmask); err != nil {
		return err
	}
	i, err := s.checkSender(method, &m.Round, m.From, s.u4)
	if err != nil {
		return err
	}
	if s.u5[i] {
		return errf(method, ErrDuplicate, "second Unmask from %d", m.From)
	}
	// expected owners: the sender and its neighbours in U2
	want := 1
	for _, j := range s.p.neighbours(i) {
		if s.u2[j] {
			want++
		}
	}
	owners := make([]int, len(m.Shares))
	vals := make([]share, len(m.Shares))
	seen := make(map[int]bool, len(m.Shares))
	for k := range m.Shares {
		e := &m.Shares[k]
		j, ok := s.p.index[e.Owner]
		switch {
		case !ok:
			return errf(method, ErrUnknownSender, "%d sent a share of %d, not a participant", m.From, e.Owner)
		case j != i && (!s.u2[j] || !s.p.g.adjacent(i, j)):
			return errf(method, ErrWrongRecipient, "%d sent a share of %d, which it does not hold", m.From, e.Owner)
		case seen[j]:
			return errf(method, ErrDuplicate, "%d sent two shares of %d", m.From, e.Owner)
		case s.u3[j] && e.Kind != SeedShare:
			return errf(method, ErrMalformed, "%d sent a %v of survivor %d; only its seed may be revealed", m.From, e.Kind, e.Owner)
		case !s.u3[j] && e.Kind != KeyShare:
			return errf(method, ErrMalformed, "%d sent a %v of dropped %d; only its masking key may be revealed", m.From, e.Kind, e.Owner)
		}
		v, ok := parseShare(e.Value[:])
		if !ok {
			return errf(method, ErrMalformed, "%d sent a share of %d outside the field", m.From, e.Owner)
		}
		seen[j] = true
		owners[k], vals[k] = j, v
	}
	if len(seen) != want {
		return errf(method, ErrMalformed, "%d sent shares of %d owners, holds %d", m.From, len(seen), want)
	}
	x := uint64(i) + 1
	for k, j := range owners {
		s.held[j] = append(s.held[j], heldShare{x: x, s: vals[k]})
	}
	s.u5[i] = true
	return nil
}

// String returns the share kind's name.
func (k ShareKind) String() string {
	switch k {
	case SeedShare:
		return "SeedShare"
	case KeyShare:
		return "KeyShare"
	}
	return fmt.Sprintf("ShareKind(%d)", uint8(k))
}

// Finish closes the round: it reconstructs the masking key of every dropped
// client that has a surviving neighbour and removes their pairwise masks,
// reconstructs the seed of every survivor and removes its self mask, and
// returns the sum of the survivors' inputs. Mask expansion and key
// agreement use all GOMAXPROCS cores.
func (s *Server) Finish() (*Result, error) {
	const method = "Finish"
	if err := s.checkStage(method, StageUnmask); err != nil {
		return nil, err
	}
	t := s.p.t
	lag := make(lagrangeCache)
	reconstruct := func(owner int) ([32]byte, error) {
		h := s.held[owner]
		if len(h) < t {
			return [32]byte{}, fmt.Errorf("%w: %d shares of the secret of %d, threshold %d", ErrTooFewSurvivors, len(h), s.p.ids[owner], t)
		}
		slices.SortFunc(h, func(a, b heldShare) int { return cmpU32(uint32(a.x), uint32(b.x)) })
		h = h[:t]
		xs := make([]uint64, t)
		sh := make([]share, t)
		for k := range h {
			xs[k], sh[k] = h[k].x, h[k].s
		}
		sec, ok := shamirCombine(sh, lag.get(xs))
		if !ok {
			return sec, fmt.Errorf("%w: the secret of %d", ErrBadShares, s.p.ids[owner])
		}
		return sec, nil
	}

	// self masks of the survivors
	var terms []maskTerm
	for i, in := range s.u3 {
		if !in {
			continue
		}
		b, err := reconstruct(i)
		if err != nil {
			return nil, s.fail(method, err)
		}
		if seedCommit(&s.p.digest, s.p.ids[i], &b) != s.adverts[i].SeedCommit {
			return nil, s.fail(method, fmt.Errorf("%w: reconstructed seed of %d does not match its commitment", ErrBadShares, s.p.ids[i]))
		}
		terms = append(terms, maskTerm{seed: b, neg: true})
	}

	// pairwise masks between dropped clients and their surviving neighbours
	type pair struct {
		key  *ecdh.PrivateKey // dropped client's masking key
		drop uint32
		surv int
	}
	var pairs []pair
	for v := range s.u2 {
		if !s.u2[v] || s.u3[v] {
			continue
		}
		var nb []int
		for _, u := range s.p.neighbours(v) {
			if s.u3[u] {
				nb = append(nb, u)
			}
		}
		if len(nb) == 0 {
			continue
		}
		sk, err := reconstruct(v)
		if err != nil {
			return nil, s.fail(method, err)
		}
		key, err := ecdh.X25519().NewPrivateKey(sk[:])
		clear(sk[:])
		if err != nil || [32]byte(key.PublicKey().Bytes()) != s.adverts[v].MaskKey {
			return nil, s.fail(method, fmt.Errorf("%w: reconstructed masking key of %d does not match its advertisement", ErrBadShares, s.p.ids[v]))
		}
		for _, u := range nb {
			pairs = append(pairs, pair{key: key, drop: s.p.ids[v], surv: u})
		}
	}
	base := len(terms)
	terms = append(terms, make([]maskTerm, len(pairs))...)
	errs := make([]error, len(pairs))
	parallelFor(len(pairs), func(lo, hi int) {
		for k := lo; k < hi; k++ {
			pr := pairs[k]
			u := s.p.ids[pr.surv]
			secret, err := agree(pr.key, &s.adverts[pr.surv].MaskKey)
			if err != nil {
				errs[k] = err
				continue
			}
			seed, err := pairSeed(secret, &s.p.digest, u, pr.drop)
			clear(secret)
			// the survivor added the mask with sign +1 unless pairNeg; undo it
			terms[base+k] = maskTerm{seed: seed, neg: !pairNeg(u, pr.drop)}
			errs[k] = err
		}
	})
	for _, err := range errs {
		if err != nil {
			return nil, s.fail(method, err)
		}
	}
	applyMasks(s.sum, terms)
	for k := range terms {
		clear(terms[k].seed[:])
	}
	res := &Result{Sum: s.sum, Survivors: slices.Clone(s.u3IDs)}
	s.sum, s.held = nil, nil
	s.stage = StageDone
	return res, nil
}

// parallelFor runs fn over [0, n) split into one contiguous range per
// GOMAXPROCS and waits for all of them.
func parallelFor(n int, fn func(lo, hi int)) {
	w := min(runtime.GOMAXPROCS(0), n)
	if w <= 1 {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	per := (n + w - 1) / w
	for lo := 0; lo < n; lo += per {
		hi := min(lo+per, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(lo, hi)
		}()
	}
	wg.Wait()
}
