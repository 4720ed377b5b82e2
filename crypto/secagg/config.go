package secagg

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"slices"
)

// Limits of a round. Decoders refuse anything larger, so no message can make
// a party allocate more than these imply.
const (
	// MinParticipants is the smallest round: with two clients the sum
	// reveals the other client's input.
	MinParticipants = 3
	// MaxParticipants bounds n (Shamir shares are indexed 1..n).
	MaxParticipants = 1 << 16
	// MaxDim bounds the vector dimension D (2^28 ring elements, 1 GiB).
	MaxDim = 1 << 28
	// MaxRoundIDLen bounds Config.RoundID.
	MaxRoundIDLen = 64
)

// Participant is one client of a round: its ID and the Ed25519 public key of
// its identity (taken from its certificate), which verifies its signatures.
type Participant struct {
	ID         uint32
	SigningKey ed25519.PublicKey
}

// Config is the public description of one round. The server and every client
// must hold the same Config: all of it is hashed into a round digest that
// every message carries and every signature and ciphertext binds, so a
// message from another round (or another config) is rejected.
//
// Zero values of Neighbours, Threshold and MinSurvivors select the defaults
// documented on each field; Resolve shows the values in effect.
type Config struct {
	// RoundID names the round uniquely, e.g. cluster ID and round number
	// (1..MaxRoundIDLen bytes). Never reuse it.
	RoundID []byte
	// Participants lists the n clients in any order; IDs must be unique.
	Participants []Participant
	// Neighbours is k, the degree of the neighbour graph. Zero means
	// 2*ceil(log2 n). It is clamped to n-1 (k = n-1 is classic SecAgg with a
	// complete graph); an odd k < n-1 is raised to the next even number,
	// because the graph is a Harary circulant (each client is joined to the
	// k/2 nearest clients on each side of a randomly permuted ring).
	Neighbours int
	// Threshold is t, the Shamir threshold within a neighbourhood of k+1
	// holders (the k neighbours and the client itself). Zero means
	// (k+1)/2 + 1. It must satisfy 2 <= t <= k+1 and 2t > k+1: a majority
	// of every neighbourhood, so that no two disjoint sets of holders can
	// both reach t (the server cannot obtain both the self-mask seed and the
	// masking key of one client). A client whose secrets have fewer than t
	// live holders cannot be recovered, so dropouts beyond that fail the
	// round with ErrTooFewSurvivors.
	Threshold int
	// MinSurvivors is the least number of clients whose inputs may be summed;
	// the round fails with ErrTooFewSurvivors when fewer remain at any stage.
	// Zero means Threshold; otherwise it must lie in [Threshold, n].
	MinSurvivors int
	// Dim is D, the number of Z_(2^32) elements in every input vector.
	Dim int
	// GraphSeed is a public random seed from which every party derives the
	// same neighbour graph. Pick it fresh per round.
	GraphSeed [32]byte
	// Quantizer, if set, is validated for n summands (Quantizer.Check) and
	// bound into the round digest so that every client encodes alike.
	Quantizer *Quantizer
}

// DefaultNeighbours returns the default k for n clients, 2*ceil(log2 n),
// before clamping to n-1.
func DefaultNeighbours(n int) int {
	if n < 2 {
		return 0
	}
	return 2 * bits.Len(uint(n-1))
}

// DefaultThreshold returns the default t for degree k: (k+1)/2 + 1, the
// smallest majority of a neighbourhood of k+1 holders.
func DefaultThreshold(k int) int { return (k+1)/2 + 1 }

// Validate reports whether the config is usable, wrapping ErrInvalidConfig.
func (c *Config) Validate() error {
	_, err := c.compile()
	return err
}

// Resolve returns a copy of c with the defaults filled in and Neighbours set
// to the degree the graph actually has.
func (c *Config) Resolve() (Config, error) {
	p, err := c.compile()
	if err != nil {
		return Config{}, err
	}
	r := *c
	r.Neighbours, r.Threshold, r.MinSurvivors = p.k, p.t, p.minSurv
	return r, nil
}

// params is a validated, resolved Config shared read-only by a party.
type params struct {
	digest  [32]byte
	ids     []uint32 // sorted; a client's index i is its position here
	keys    []ed25519.PublicKey
	index   map[uint32]int
	k       int // effective degree
	t       int
	minSurv int
	dim     int
	g       graph
}

func invalid(format string, a ...any) error {
	return fmt.Errorf("secagg.Config: %w: %s", ErrInvalidConfig, fmt.Sprintf(format, a...))
}

func (c *Config) compile() (*params, error) {
	n := len(c.Participants)
	switch {
	case len(c.RoundID) == 0 || len(c.RoundID) > MaxRoundIDLen:
		return nil, invalid("RoundID must have 1..%d bytes, has %d", MaxRoundIDLen, len(c.RoundID))
	case n < MinParticipants || n > MaxParticipants:
		return nil, invalid("%d participants, want %d..%d", n, MinParticipants, MaxParticipants)
	case c.Dim < 1 || c.Dim > MaxDim:
		return nil, invalid("Dim %d, want 1..%d", c.Dim, MaxDim)
	case c.Neighbours < 0 || c.Threshold < 0 || c.MinSurvivors < 0:
		return nil, invalid("negative Neighbours, Threshold or MinSurvivors")
	}
	ps := slices.Clone(c.Participants)
	slices.SortFunc(ps, func(a, b Participant) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	p := &params{
		ids:   make([]uint32, n),
		keys:  make([]ed25519.PublicKey, n),
		index: make(map[uint32]int, n),
		dim:   c.Dim,
	}
	for i, q := range ps {
		if i > 0 && q.ID == ps[i-1].ID {
			return nil, invalid("duplicate participant ID %d", q.ID)
		}
		if len(q.SigningKey) != ed25519.PublicKeySize {
			return nil, invalid("participant %d: signing key has %d bytes", q.ID, len(q.SigningKey))
		}
		p.ids[i] = q.ID
		p.keys[i] = slices.Clone(q.SigningKey)
		p.index[q.ID] = i
	}

	k := c.Neighbours
	if k == 0 {
		k = DefaultNeighbours(n)
	}
	k = max(k, 2)
	if k < n-1 && k%2 == 1 {
		k++
	}
	k = min(k, n-1)
	p.k = k

	t := c.Threshold
	if t == 0 {
		t = DefaultThreshold(k)
	}
	if t < 2 || t > k+1 || 2*t <= k+1 {
		return nil, invalid("Threshold %d for k=%d: need 2 <= t <= k+1 and 2t > k+1", t, k)
	}
	p.t = t
	p.minSurv = t
	if c.MinSurvivors != 0 {
		if c.MinSurvivors < t || c.MinSurvivors > n {
			return nil, invalid("MinSurvivors %d, want %d..%d", c.MinSurvivors, t, n)
		}
		p.minSurv = c.MinSurvivors
	}
	if c.Quantizer != nil {
		if err := c.Quantizer.Check(n); err != nil {
			return nil, fmt.Errorf("secagg.Config: %w: %w", ErrInvalidConfig, err)
		}
	}
	p.g = newGraph(n, k, c.GraphSeed)
	p.digest = c.digest(p)
	return p, nil
}

// digest hashes everything every party must agree on.
func (c *Config) digest(p *params) [32]byte {
	var b bytes.Buffer
	b.WriteString("fedge/secagg/v1 config")
	b.WriteByte(byte(len(c.RoundID)))
	b.Write(c.RoundID)
	put := func(v uint32) { b.Write(binary.BigEndian.AppendUint32(nil, v)) }
	put(uint32(len(p.ids)))
	for i, id := range p.ids {
		put(id)
		b.Write(p.keys[i])
	}
	put(uint32(p.k))
	put(uint32(p.t))
	put(uint32(p.minSurv))
	put(uint32(p.dim))
	b.Write(c.GraphSeed[:])
	if q := c.Quantizer; q != nil {
		b.WriteByte(1)
		put(math.Float32bits(q.Clip))
		put(uint32(q.Bits))
		put(q.MaxWeight)
	} else {
		b.WriteByte(0)
	}
	return sha256.Sum256(b.Bytes())
}

// neighbours returns the indices adjacent to client index i, ascending.
func (p *params) neighbours(i int) []int { return p.g.neighbours(i) }

func (p *params) neighbourIDs(i int) []uint32 {
	nb := p.g.neighbours(i)
	out := make([]uint32, len(nb))
	for k, j := range nb {
		out[k] = p.ids[j]
	}
	return out
}

// NeighboursForDropout returns a degree k for n clients of which each drops
// out independently with probability dropout before unmasking: the
// smallest even k >= DefaultNeighbours(n) for which a union bound over all
// secrets puts the chance that one cannot reach the default threshold
// (and the round fails with ErrTooFewSurvivors) below failProb; n-1
// (classic SecAgg) if none is smaller. A planning aid for the coordinator,
// which knows its dropout rate: the default k = 2*ceil(log2 n) suits about
// 10% dropout at n = 1000, while 30% needs k of about 130.
func NeighboursForDropout(n int, dropout, failProb float64) int {
	if n < MinParticipants {
		return max(n-1, 0)
	}
	if dropout >= 0.5 || failProb <= 0 {
		return n - 1 // a majority threshold cannot be met reliably
	}
	dropout = max(dropout, 0)
	ok := func(k int) bool { return dropoutFailure(n, k, dropout) <= failProb }
	lo := min(DefaultNeighbours(n), n-1)
	if ok(lo) {
		return lo
	}
	// exponential then binary search over even k (the bound falls with k)
	hi := lo
	for !ok(hi) {
		if hi >= n-1 {
			return n - 1
		}
		lo = hi
		hi = min(2*hi, n-1)
	}
	for hi-lo > 2 {
		mid := (lo + hi) / 2 &^ 1
		if mid <= lo {
			break
		}
		if ok(mid) {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi
}

// dropoutFailure is the union bound of NeighboursForDropout: a dropped
// client needs t of its k neighbours alive, a survivor t-1 of them.
func dropoutFailure(n, k int, dropout float64) float64 {
	t := DefaultThreshold(k)
	if k < n-1 && k%2 == 1 {
		k++
	}
	return float64(n) * (dropout*binomialBelow(k, 1-dropout, t) + (1-dropout)*binomialBelow(k, 1-dropout, t-1))
}

// binomialBelow returns P(Binomial(k, q) < t).
func binomialBelow(k int, q float64, t int) float64 {
	if q >= 1 {
		if t > k {
			return 1
		}
		return 0
	}
	lk, _ := math.Lgamma(float64(k + 1))
	s := 0.0
	for i := 0; i < t && i <= k; i++ {
		li, _ := math.Lgamma(float64(i + 1))
		lr, _ := math.Lgamma(float64(k - i + 1))
		s += math.Exp(lk - li - lr + float64(i)*math.Log(q) + float64(k-i)*math.Log1p(-q))
	}
	return min(s, 1)
}
