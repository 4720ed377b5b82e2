package secagg

import (
	"crypto/ed25519"
	"fmt"
	"slices"
)

// Stage is where a Server's round stands: the stage whose client messages
// it currently accepts.
type Stage int

// The stages, in order. StageDone and StageFailed are terminal.
const (
	StageAdvertiseKeys Stage = iota
	StageShareKeys
	StageMaskedInput
	StageConsistencyCheck
	StageUnmask
	StageDone
	StageFailed
)

var stageNames = [...]string{"AdvertiseKeys", "ShareKeys", "MaskedInput", "ConsistencyCheck", "Unmask", "Done", "Failed"}

// String returns the stage name.
func (s Stage) String() string {
	if s >= 0 && int(s) < len(stageNames) {
		return stageNames[s]
	}
	return fmt.Sprintf("Stage(%d)", int(s))
}

// Server is the aggregator's side of a round. For each stage the caller
// feeds it the clients' messages with Add* as they arrive, closes the stage
// with End* (at a deadline, or early when Pending is empty), and relays the
// server's per-client reply (KeyList, ShareList, SurvivorList,
// SignatureList) to each client that End* returned:
//
//	AddAdvertiseKeys*    EndAdvertiseKeys    -> KeyList(id)
//	AddShareKeys*        EndShareKeys        -> ShareList(id)
//	AddMaskedInput*      EndMaskedInput      -> SurvivorList()
//	AddConsistencyCheck* EndConsistencyCheck -> SignatureList(id)
//	AddUnmask*           Finish              -> Result
//
// Masked inputs are added into one running sum as they arrive; no client's
// vector is kept. A rejected message leaves the server unchanged. When too
// few clients remain, End*/Finish fail with ErrTooFewSurvivors, the round
// is over and the partial sum is erased. A Server is not safe for
// concurrent use.
type Server struct {
	p     *params
	stage Stage
	err   error // why the round failed (StageFailed)

	adverts []*AdvertiseKeys   // stage 0 messages by client index
	u1      []bool             // advertised (after pruning)
	shares  [][]EncryptedShare // stage 1 ciphertexts by sender, sorted by Peer
	u2      []bool             // shared keys (after pruning)
	sent    []bool             // sent a masked input
	sum     []uint32
	u3      []bool // masked input in the sum
	u3IDs   []uint32
	u3Hash  [32]byte
	checks  []*ConsistencyCheck
	u4      []bool
	u5      []bool
	held    map[int][]heldShare // revealed shares by owner index
}

type heldShare struct {
	x uint64 // holder index + 1
	s share
}

// NewServer returns the server of the round described by cfg.
func NewServer(cfg *Config) (*Server, error) {
	p, err := cfg.compile()
	if err != nil {
		return nil, fmt.Errorf("secagg.NewServer: %w", err)
	}
	n := len(p.ids)
	return &Server{
		p:       p,
		adverts: make([]*AdvertiseKeys, n),
		u1:      make([]bool, n),
		shares:  make([][]EncryptedShare, n),
		u2:      make([]bool, n),
		sent:    make([]bool, n),
		u3:      make([]bool, n),
		checks:  make([]*ConsistencyCheck, n),
		u4:      make([]bool, n),
		u5:      make([]bool, n),
	}, nil
}

// Stage returns the current stage.
func (s *Server) Stage() Stage { return s.stage }

// Err returns why the round failed, or nil.
func (s *Server) Err() error { return s.err }

// Neighbours returns the IDs of id's neighbours in the graph (nil if id is
// not a participant).
func (s *Server) Neighbours(id uint32) []uint32 {
	i, ok := s.p.index[id]
	if !ok {
		return nil
	}
	return s.p.neighbourIDs(i)
}

// Pending returns the clients from which the current stage still expects a
// message, ascending.
func (s *Server) Pending() []uint32 {
	var want func(i int) bool
	switch s.stage {
	case StageAdvertiseKeys:
		want = func(i int) bool { return s.adverts[i] == nil }
	case StageShareKeys:
		want = func(i int) bool { return s.u1[i] && s.shares[i] == nil }
	case StageMaskedInput:
		want = func(i int) bool { return s.u2[i] && !s.sent[i] }
	case StageConsistencyCheck:
		want = func(i int) bool { return s.u3[i] && s.checks[i] == nil }
	case StageUnmask:
		want = func(i int) bool { return s.u4[i] && !s.u5[i] }
	default:
		return nil
	}
	var out []uint32
	for i, id := range s.p.ids {
		if want(i) {
			out = append(out, id)
		}
	}
	return out
}

func errf(method string, sentinel error, format string, a ...any) error {
	return fmt.Errorf("secagg.Server.%s: %w: %s", method, sentinel, fmt.Sprintf(format, a...))
}

func (s *Server) checkStage(method string, want Stage) error {
	if s.stage == StageFailed {
		return fmt.Errorf("secagg.Server.%s: round failed: %w", method, s.err)
	}
	if s.stage != want {
		return errf(method, ErrOutOfOrder, "server is at stage %v, %s belongs to %v", s.stage, method, want)
	}
	return nil
}

// checkSender validates the round and the sender, who must be in set (nil:
// any participant), and returns its index.
func (s *Server) checkSender(method string, round *[32]byte, from uint32, set []bool) (int, error) {
	if *round != s.p.digest {
		return 0, errf(method, ErrWrongRound, "round digest %x, want %x", round[:6], s.p.digest[:6])
	}
	i, ok := s.p.index[from]
	if !ok {
		return 0, errf(method, ErrUnknownSender, "%d is not a participant", from)
	}
	if set != nil && !set[i] {
		return 0, errf(method, ErrUnknownSender, "%d is not expected at stage %v", from, s.stage)
	}
	return i, nil
}

func (s *Server) fail(method string, err error) error {
	s.stage = StageFailed
	s.err = fmt.Errorf("secagg.Server.%s: %w", method, err)
	clear(s.sum)
	s.sum = nil
	s.held = nil
	return s.err
}

func (s *Server) members(set []bool) []uint32 {
	var out []uint32
	for i, in := range set {
		if in {
			out = append(out, s.p.ids[i])
		}
	}
	return out
}

func countTrue(set []bool) int {
	c := 0
	for _, b := range set {
		if b {
			c++
		}
	}
	return c
}

// prune removes, until none is left, every client with fewer than t-1
// neighbours in alive: its secrets could never be reconstructed. It
// returns the number of clients left.
func (s *Server) prune(alive []bool) int {
	g, t := &s.p.g, s.p.t
	total := countTrue(alive)
	if g.complete {
		if total < t {
			clear(alive)
			return 0
		}
		return total
	}
	cnt := make([]int, len(alive))
	var queue []int
	for i, a := range alive {
		if a {
			cnt[i] = g.count(i, alive, total)
			if cnt[i]+1 < t {
				queue = append(queue, i)
			}
		}
	}
	for len(queue) > 0 {
		i := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		if !alive[i] {
			continue
		}
		alive[i] = false
		total--
		for _, j := range g.neighbours(i) {
			if alive[j] {
				cnt[j]--
				if cnt[j]+1 < t {
					queue = append(queue, j)
				}
			}
		}
	}
	return total
}

// AddAdvertiseKeys accepts a client's signed key advertisement.
func (s *Server) AddAdvertiseKeys(m *AdvertiseKeys) error {
	const method = "AddAdvertiseKeys"
	if err := s.checkStage(method, StageAdvertiseKeys); err != nil {
		return err
	}
	i, err := s.checkSender(method, &m.Round, m.From, nil)
	if err != nil {
		return err
	}
	if s.adverts[i] != nil {
		return errf(method, ErrDuplicate, "second advertisement from %d", m.From)
	}
	if !ed25519.Verify(s.p.keys[i], advertiseSigned(m), m.Sig[:]) {
		return errf(method, ErrForged, "advertisement of %d", m.From)
	}
	if lowOrderX25519(&m.EncKey) || lowOrderX25519(&m.MaskKey) {
		return errf(method, ErrMalformed, "advertisement of %d has a low-order key", m.From)
	}
	cp := *m
	s.adverts[i] = &cp
	return nil
}

// EndAdvertiseKeys closes stage 0 and returns the clients that go on, each
// of which must receive KeyList(id). Clients with fewer than t-1
// advertised neighbours are dropped.
func (s *Server) EndAdvertiseKeys() ([]uint32, error) {
	const method = "EndAdvertiseKeys"
	if err := s.checkStage(method, StageAdvertiseKeys); err != nil {
		return nil, err
	}
	for i, a := range s.adverts {
		s.u1[i] = a != nil
	}
	if n := s.prune(s.u1); n < s.p.minSurv {
		return nil, s.fail(method, fmt.Errorf("%w: %d clients can go on after advertising, need %d", ErrTooFewSurvivors, n, s.p.minSurv))
	}
	s.stage = StageShareKeys
	return s.members(s.u1), nil
}

// KeyList returns the advertisements of to's neighbours, to send to it
// after EndAdvertiseKeys.
func (s *Server) KeyList(to uint32) (*KeyList, error) {
	const method = "KeyList"
	if err := s.checkStage(method, StageShareKeys); err != nil {
		return nil, err
	}
	i, ok := s.p.index[to]
	if !ok || !s.u1[i] {
		return nil, errf(method, ErrWrongRecipient, "%d does not take part in stage %v", to, s.stage)
	}
	m := &KeyList{Round: s.p.digest, To: to}
	for _, j := range s.p.neighbours(i) {
		if s.u1[j] {
			m.Keys = append(m.Keys, *s.adverts[j])
		}
	}
	return m, nil
}

// AddShareKeys accepts a client's encrypted shares: exactly one ciphertext
// for each of its neighbours that received KeyLists.
func (s *Server) AddShareKeys(m *ShareKeys) error {
	const method = "AddShareKeys"
	if err := s.checkStage(method, StageShareKeys); err != nil {
		return err
	}
	i, err := s.checkSender(method, &m.Round, m.From, s.u1)
	if err != nil {
		return err
	}
	if s.shares[i] != nil {
		return errf(method, ErrDuplicate, "second ShareKeys from %d", m.From)
	}
	want := 0
	for _, j := range s.p.neighbours(i) {
		if s.u1[j] {
			want++
		}
	}
	sorted := slices.Clone(m.Shares)
	slices.SortFunc(sorted, func(a, b EncryptedShare) int { return cmpU32(a.Peer, b.Peer) })
	for k := range sorted {
		peer := sorted[k].Peer
		j, ok := s.p.index[peer]
		if !ok || !s.u1[j] || !s.p.g.adjacent(i, j) {
			return errf(method, ErrWrongRecipient, "%d sent a share to %d, not a live neighbour", m.From, peer)
		}
		if k > 0 && sorted[k-1].Peer == peer {
			return errf(method, ErrDuplicate, "%d sent two shares to %d", m.From, peer)
		}
	}
	if len(sorted) != want {
		return errf(method, ErrMalformed, "%d sent %d shares, its KeyList had %d neighbours", m.From, len(sorted), want)
	}
	if sorted == nil {
		sorted = []EncryptedShare{}
	}
	s.shares[i] = sorted
	return nil
}

func cmpU32(a, b uint32) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// EndShareKeys closes stage 1 and returns the clients that go on, each of
// which must receive ShareList(id). Clients with fewer than t-1 neighbours
// that shared keys are dropped.
func (s *Server) EndShareKeys() ([]uint32, error) {
	const method = "EndShareKeys"
	if err := s.checkStage(method, StageShareKeys); err != nil {
		return nil, err
	}
	for i := range s.u2 {
		s.u2[i] = s.u1[i] && s.shares[i] != nil
	}
	if n := s.prune(s.u2); n < s.p.minSurv {
		return nil, s.fail(method, fmt.Errorf("%w: %d clients can go on after sharing keys, need %d", ErrTooFewSurvivors, n, s.p.minSurv))
	}
	s.sum = make([]uint32, s.p.dim)
	s.stage = StageMaskedInput
	return s.members(s.u2), nil
}

// ShareList returns the ciphertexts to's neighbours addressed to it, to
// send to it after EndShareKeys.
func (s *Server) ShareList(to uint32) (*ShareList, error) {
	const method = "ShareList"
	if err := s.checkStage(method, StageMaskedInput); err != nil {
		return nil, err
	}
	i, ok := s.p.index[to]
	if !ok || !s.u2[i] {
		return nil, errf(method, ErrWrongRecipient, "%d does not take part in stage %v", to, s.stage)
	}
	m := &ShareList{Round: s.p.digest, To: to}
	for _, j := range s.p.neighbours(i) {
		if !s.u2[j] {
			continue
		}
		sh := s.shares[j]
		k, found := slices.BinarySearchFunc(sh, to, func(e EncryptedShare, id uint32) int { return cmpU32(e.Peer, id) })
		if !found {
			// unreachable: AddShareKeys demanded a share for every live neighbour
			return nil, errf(method, ErrMalformed, "%d holds no share for %d", s.p.ids[j], to)
		}
		m.Shares = append(m.Shares, EncryptedShare{Peer: s.p.ids[j], Ciphertext: sh[k].Ciphertext})
	}
	return m, nil
}

// AddMaskedInput adds a client's masked vector into the running sum.
func (s *Server) AddMaskedInput(m *MaskedInput) error {
	const method = "AddMaskedInput"
	if err := s.checkStage(method, StageMaskedInput); err != nil {
		return err
	}
	i, err := s.checkSender(method, &m.Round, m.From, s.u2)
	if err != nil {
		return err
	}
	if s.sent[i] {
		return errf(method, ErrDuplicate, "second masked input from %d", m.From)
	}
	if len(m.Y) != s.p.dim {
		return errf(method, ErrMalformed, "masked input of %d has %d elements, want %d", m.From, len(m.Y), s.p.dim)
	}
	addVec(s.sum, m.Y)
	s.sent[i] = true
	return nil
}

// EndMaskedInput closes stage 2: the clients whose inputs were added form
// the survivor set U3, returned (ascending) and announced by SurvivorList.
func (s *Server) EndMaskedInput() ([]uint32, error) {
	const method = "EndMaskedInput"
	if err := s.checkStage(method, StageMaskedInput); err != nil {
		return nil, err
	}
	copy(s.u3, s.sent)
	n := countTrue(s.u3)
	if n < s.p.minSurv {
		return nil, s.fail(method, fmt.Errorf("%w: %d masked inputs, need %d", ErrTooFewSurvivors, n, s.p.minSurv))
	}
	if err := s.recoverable(s.u3); err != nil {
		return nil, s.fail(method, err)
	}
	s.u3IDs = s.members(s.u3)
	s.u3Hash = survivorsHash(s.u3IDs)
	s.stage = StageConsistencyCheck
	return slices.Clone(s.u3IDs), nil
}

// recoverable checks that, if every client in holders reveals its shares,
// each secret the unmasking needs reaches t shares: the seed b of each
// survivor (held by it and its neighbours) and the masking key of each
// dropped client with a surviving neighbour (held by its neighbours).
func (s *Server) recoverable(holders []bool) error {
	g, t := &s.p.g, s.p.t
	nh, n3 := countTrue(holders), countTrue(s.u3)
	for i := range s.u3 {
		switch {
		case s.u3[i]:
			c := g.count(i, holders, nh)
			if holders[i] {
				c++
			}
			if c < t {
				return fmt.Errorf("%w: the seed of %d has %d live holders, threshold %d", ErrTooFewSurvivors, s.p.ids[i], c, t)
			}
		case s.u2[i]:
			if g.count(i, s.u3, n3) == 0 {
				continue // none of its masks is in the sum
			}
			if c := g.count(i, holders, nh); c < t {
				return fmt.Errorf("%w: the masking key of dropped %d has %d live holders, threshold %d", ErrTooFewSurvivors, s.p.ids[i], c, t)
			}
		}
	}
	return nil
}

// SurvivorList returns the survivor set to send to every client in it
// after EndMaskedInput.
func (s *Server) SurvivorList() (*SurvivorList, error) {
	if err := s.checkStage("SurvivorList", StageConsistencyCheck); err != nil {
		return nil, err
	}
	return &SurvivorList{Round: s.p.digest, Survivors: slices.Clone(s.u3IDs)}, nil
}

// AddConsistencyCheck accepts a survivor's signature on the survivor set.
func (s *Server) AddConsistencyCheck(m *ConsistencyCheck) error {
	const method = "AddConsistencyCheck"
	if err := s.checkStage(method, StageConsistencyCheck); err != nil {
		return err
	}
	i, err := s.checkSender(method, &m.Round, m.From, s.u3)
	if err != nil {
		return err
	}
	if s.checks[i] != nil {
		return errf(method, ErrDuplicate, "second consistency check from %d", m.From)
	}
	if !ed25519.Verify(s.p.keys[i], consistencySigned(&s.p.digest, m.From, &s.u3Hash), m.Sig[:]) {
		return errf(method, ErrForged, "consistency signature of %d", m.From)
	}
	cp := *m
	s.checks[i] = &cp
	return nil
}

// EndConsistencyCheck closes stage 3 and returns the clients that signed,
// each of which must receive SignatureList(id).
func (s *Server) EndConsistencyCheck() ([]uint32, error) {
	const method = "EndConsistencyCheck"
	if err := s.checkStage(method, StageConsistencyCheck); err != nil {
		return nil, err
	}
	for i := range s.u4 {
		s.u4[i] = s.checks[i] != nil
	}
	// A signer with fewer than t-1 signing neighbours will refuse to
	// unmask, so it cannot count as a holder.
	holders := slices.Clone(s.u4)
	n4 := countTrue(s.u4)
	for i, in := range s.u4 {
		if in && s.p.g.count(i, s.u4, n4)+1 < s.p.t {
			holders[i] = false
		}
	}
	if err := s.recoverable(holders); err != nil {
		return nil, s.fail(method, err)
	}
	s.held = make(map[int][]heldShare)
	s.stage = StageUnmask
	return s.members(s.u4), nil
}

// SignatureList returns the consistency signatures of to's neighbours, to
// send to it after EndConsistencyCheck.
func (s *Server) SignatureList(to uint32) (*SignatureList, error) {
	const method = "SignatureList"
	if err := s.checkStage(method, StageUnmask); err != nil {
		return nil, err
	}
	i, ok := s.p.index[to]
	if !ok || !s.u4[i] {
		return nil, errf(method, ErrWrongRecipient, "%d does not take part in stage %v", to, s.stage)
	}
	m := &SignatureList{Round: s.p.digest, To: to}
	for _, j := range s.p.neighbours(i) {
		if s.u4[j] {
			m.Checks = append(m.Checks, *s.checks[j])
		}
	}
	return m, nil
}
