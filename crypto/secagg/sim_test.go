package secagg

import (
	"crypto/ed25519"
	"encoding"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// sim drives one full round with real clients and a real server, moving
// every message through MarshalBinary/UnmarshalBinary.
type sim struct {
	tb      testing.TB
	cfg     *Config
	signers map[uint32]ed25519.PrivateKey
	clients map[uint32]*Client
	inputs  map[uint32][]uint32
	srv     *Server
	ids     []uint32
	// drop[id] = first stage (0..4) at which id stops sending; absent = never
	drop map[uint32]int
	// observed sets
	accepted []uint32 // masked inputs the server took
	// wirePath sends masked inputs through AddMaskedInputWire (the
	// coordinator's streaming path) instead of AddMaskedInput.
	wirePath bool
	// streamPath sends masked inputs through MaskedStream in uneven
	// pieces; a client dropping at the masked-input stage streams half of
	// its input first, which an undoing stream then takes out.
	streamPath bool
}

// newSim builds a round of n clients with random distinct IDs.
func newSim(tb testing.TB, rng *rand.Rand, n, k, thr, dim int) *sim {
	tb.Helper()
	s := &sim{
		tb:      tb,
		signers: map[uint32]ed25519.PrivateKey{},
		clients: map[uint32]*Client{},
		inputs:  map[uint32][]uint32{},
		drop:    map[uint32]int{},
	}
	cfg := &Config{RoundID: []byte(fmt.Sprintf("round-%d", rng.Uint64())), Neighbours: k, Threshold: thr, Dim: dim}
	for i := range cfg.GraphSeed {
		cfg.GraphSeed[i] = byte(rng.Uint32())
	}
	seen := map[uint32]bool{}
	for len(s.ids) < n {
		id := rng.Uint32()
		if seen[id] {
			continue
		}
		seen[id] = true
		var seed [32]byte
		for i := range seed {
			seed[i] = byte(rng.Uint32())
		}
		key := ed25519.NewKeyFromSeed(seed[:])
		s.signers[id] = key
		s.ids = append(s.ids, id)
		cfg.Participants = append(cfg.Participants, Participant{ID: id, SigningKey: key.Public().(ed25519.PublicKey)})
	}
	slices.Sort(s.ids)
	s.cfg = cfg
	srv, err := NewServer(cfg)
	if err != nil {
		tb.Fatalf("NewServer: %v", err)
	}
	s.srv = srv
	for _, id := range s.ids {
		var seed [32]byte
		for i := range seed {
			seed[i] = byte(rng.Uint32())
		}
		c, err := NewClient(cfg, id, s.signers[id], rand.NewChaCha8(seed))
		if err != nil {
			tb.Fatalf("NewClient: %v", err)
		}
		s.clients[id] = c
		x := make([]uint32, dim)
		for i := range x {
			x[i] = rng.Uint32()
		}
		s.inputs[id] = x
	}
	return s
}

func (s *sim) dropped(id uint32, stage int) bool {
	d, ok := s.drop[id]
	return ok && d <= stage
}

type wireMsg interface {
	encoding.BinaryMarshaler
	encoding.BinaryUnmarshaler
}

// wire round-trips m through its encoding into fresh.
func wire[T wireMsg](tb testing.TB, m, fresh T) T {
	tb.Helper()
	b, err := m.MarshalBinary()
	if err != nil {
		tb.Fatalf("%T.MarshalBinary: %v", m, err)
	}
	if err := fresh.UnmarshalBinary(b); err != nil {
		tb.Fatalf("%T.UnmarshalBinary: %v", m, err)
	}
	return fresh
}

// stageErr is the outcome of a simulated round.
type stageErr struct {
	stage int // where the server failed, or 5 for Finish, -1 for success
	err   error
}

// run plays the round; client-side and message-level errors fail the test
// (only the server may legitimately refuse to go on).
func (s *sim) run() (*Result, stageErr) {
	tb, srv := s.tb, s.srv
	for _, id := range s.ids {
		if s.dropped(id, 0) {
			continue
		}
		m, err := s.clients[id].AdvertiseKeys()
		if err != nil {
			tb.Fatalf("AdvertiseKeys(%d): %v", id, err)
		}
		if err := srv.AddAdvertiseKeys(wire(tb, m, &AdvertiseKeys{})); err != nil {
			tb.Fatalf("AddAdvertiseKeys(%d): %v", id, err)
		}
	}
	next, err := srv.EndAdvertiseKeys()
	if err != nil {
		return nil, stageErr{0, err}
	}
	for _, id := range next {
		if s.dropped(id, 1) {
			continue
		}
		kl, err := srv.KeyList(id)
		if err != nil {
			tb.Fatalf("KeyList(%d): %v", id, err)
		}
		m, err := s.clients[id].ShareKeys(wire(tb, kl, &KeyList{}))
		if err != nil {
			tb.Fatalf("ShareKeys(%d): %v", id, err)
		}
		if err := srv.AddShareKeys(wire(tb, m, &ShareKeys{})); err != nil {
			tb.Fatalf("AddShareKeys(%d): %v", id, err)
		}
	}
	if next, err = srv.EndShareKeys(); err != nil {
		return nil, stageErr{1, err}
	}
	for _, id := range next {
		if s.dropped(id, 2) && !s.streamPath {
			continue
		}
		sl, err := srv.ShareList(id)
		if err != nil {
			tb.Fatalf("ShareList(%d): %v", id, err)
		}
		m, err := s.clients[id].MaskedInput(wire(tb, sl, &ShareList{}), s.inputs[id])
		if err != nil {
			tb.Fatalf("MaskedInput(%d): %v", id, err)
		}
		if s.streamPath {
			b, err := m.MarshalBinary()
			if err != nil {
				tb.Fatal(err)
			}
			if s.dropped(id, 2) {
				half := b[:len(b)/2+1]
				streamPieces(tb, srv.StreamMaskedInput(id), half)
				streamPieces(tb, srv.UndoMaskedStream(id), half)
				continue
			}
			st := streamPieces(tb, srv.StreamMaskedInput(id), b)
			if err := st.Finish(); err != nil {
				tb.Fatalf("MaskedStream.Finish(%d): %v", id, err)
			}
			if _, err := srv.StreamMaskedInput(id).Write(b[:64]); !errors.Is(err, ErrDuplicate) {
				tb.Fatalf("a second stream of %d: %v", id, err)
			}
			if _, err := srv.StreamMaskedInput(id ^ 1).Write(b[:64]); !errors.Is(err, ErrForged) {
				tb.Fatalf("a stream of %d's input as another sender: %v", id, err)
			}
		} else if s.wirePath {
			b, err := m.MarshalBinary()
			if err != nil {
				tb.Fatal(err)
			}
			if err := srv.AddMaskedInputWire(b, id^1); !errors.Is(err, ErrForged) {
				tb.Fatalf("AddMaskedInputWire accepted a sender mismatch: %v", err)
			}
			if err := srv.AddMaskedInputWire(b[:len(b)-1], id); !errors.Is(err, ErrMalformed) {
				tb.Fatalf("AddMaskedInputWire accepted a truncated input: %v", err)
			}
			if err := srv.AddMaskedInputWire(b, id); err != nil {
				tb.Fatalf("AddMaskedInputWire(%d): %v", id, err)
			}
			if err := srv.AddMaskedInputWire(b, id); !errors.Is(err, ErrDuplicate) {
				tb.Fatalf("AddMaskedInputWire took a duplicate: %v", err)
			}
		} else if err := srv.AddMaskedInput(wire(tb, m, &MaskedInput{})); err != nil {
			tb.Fatalf("AddMaskedInput(%d): %v", id, err)
		}
		s.accepted = append(s.accepted, id)
	}
	if next, err = srv.EndMaskedInput(); err != nil {
		return nil, stageErr{2, err}
	}
	sl, err := srv.SurvivorList()
	if err != nil {
		tb.Fatalf("SurvivorList: %v", err)
	}
	sl = wire(tb, sl, &SurvivorList{})
	for _, id := range next {
		if s.dropped(id, 3) {
			continue
		}
		m, err := s.clients[id].ConsistencyCheck(sl)
		if err != nil {
			tb.Fatalf("ConsistencyCheck(%d): %v", id, err)
		}
		if err := srv.AddConsistencyCheck(wire(tb, m, &ConsistencyCheck{})); err != nil {
			tb.Fatalf("AddConsistencyCheck(%d): %v", id, err)
		}
	}
	if next, err = srv.EndConsistencyCheck(); err != nil {
		return nil, stageErr{3, err}
	}
	for _, id := range next {
		if s.dropped(id, 4) {
			continue
		}
		sg, err := srv.SignatureList(id)
		if err != nil {
			tb.Fatalf("SignatureList(%d): %v", id, err)
		}
		m, err := s.clients[id].Unmask(wire(tb, sg, &SignatureList{}))
		if errors.Is(err, ErrTooFewSurvivors) {
			continue // too few neighbours signed: this client rightly refuses
		}
		if err != nil {
			tb.Fatalf("Unmask(%d): %v", id, err)
		}
		if err := srv.AddUnmask(wire(tb, m, &Unmask{})); err != nil {
			tb.Fatalf("AddUnmask(%d): %v", id, err)
		}
	}
	res, err := srv.Finish()
	if err != nil {
		return nil, stageErr{4, err}
	}
	return res, stageErr{-1, nil}
}

// plainSum is the sum mod 2^32 of the inputs of ids.
func (s *sim) plainSum(ids []uint32) []uint32 {
	sum := make([]uint32, s.cfg.Dim)
	for _, id := range ids {
		for i, v := range s.inputs[id] {
			sum[i] += v
		}
	}
	return sum
}

// oracle decides from the drop schedule alone, with its own set logic,
// whether the round must succeed, following the rules the package
// documents: after advertising and after sharing, clients with fewer than
// t-1 live neighbours are dropped (repeatedly); the round needs
// MinSurvivors at every stage up to the masked inputs; at unmasking, every
// survivor's seed and every dropped client's masking key (if it has a
// surviving neighbour) needs t shares from clients that unmask, and a
// client unmasks only if at least t-1 of its neighbours signed.
func (s *sim) oracle() (ok bool, u3 []uint32) {
	p, err := s.cfg.compile()
	if err != nil {
		s.tb.Fatal(err)
	}
	nb := map[uint32]map[uint32]bool{}
	for _, id := range s.ids {
		nb[id] = map[uint32]bool{}
		for _, j := range s.clients[id].Neighbours() {
			nb[id][j] = true
		}
	}
	count := func(id uint32, set map[uint32]bool) int {
		c := 0
		for j := range nb[id] {
			if set[j] {
				c++
			}
		}
		return c
	}
	prune := func(set map[uint32]bool) {
		for changed := true; changed; {
			changed = false
			for id := range set {
				if set[id] && count(id, set)+1 < p.t {
					delete(set, id)
					changed = true
				}
			}
		}
	}
	after := func(prev map[uint32]bool, stage int) map[uint32]bool {
		out := map[uint32]bool{}
		for id := range prev {
			if !s.dropped(id, stage) {
				out[id] = true
			}
		}
		return out
	}
	all := map[uint32]bool{}
	for _, id := range s.ids {
		all[id] = true
	}
	U1 := after(all, 0)
	prune(U1)
	if len(U1) < p.minSurv {
		return false, nil
	}
	U2 := after(U1, 1)
	prune(U2)
	if len(U2) < p.minSurv {
		return false, nil
	}
	U3 := after(U2, 2)
	for id := range U3 {
		u3 = append(u3, id)
	}
	slices.Sort(u3)
	if len(U3) < p.minSurv {
		return false, u3
	}
	U4 := after(U3, 3)
	U5 := map[uint32]bool{}
	for id := range after(U4, 4) {
		if count(id, U4)+1 >= p.t {
			U5[id] = true
		}
	}
	for id := range U2 {
		if U3[id] {
			c := count(id, U5)
			if U5[id] {
				c++
			}
			if c < p.t {
				return false, u3
			}
		} else if count(id, U3) > 0 && count(id, U5) < p.t {
			return false, u3
		}
	}
	return true, u3
}

// streamPieces writes b to st in pieces of uneven sizes (1 to 13 bytes,
// then larger), as chunks of an upload arrive.
func streamPieces(tb testing.TB, st *MaskedStream, b []byte) *MaskedStream {
	tb.Helper()
	for i, k := 0, 1; i < len(b); k = k%13 + 1 {
		n := min(k, len(b)-i)
		if i > 200 {
			n = min(257, len(b)-i)
		}
		if _, err := st.Write(b[i : i+n]); err != nil {
			tb.Fatalf("MaskedStream.Write at %d: %v", i, err)
		}
		i += n
	}
	return st
}
