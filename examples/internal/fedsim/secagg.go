package fedsim

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"time"

	"github.com/fedge/fedge/coordinator"
	"github.com/fedge/fedge/crypto/secagg"
)

// ErrNoUpdates is returned by Aggregate when no update survives to be
// averaged.
var ErrNoUpdates = errors.New("fedsim: no updates to aggregate")

// Fleet is a set of simulated clients, each with its own Ed25519 identity
// key, as enrolled agents have.
type Fleet struct {
	name string
	keys []ed25519.PrivateKey
	pubs []ed25519.PublicKey
}

// NewFleet creates n clients with fresh identity keys. name prefixes every
// round ID, like a cluster name.
func NewFleet(name string, n int) (*Fleet, error) {
	f := &Fleet{name: name, keys: make([]ed25519.PrivateKey, n), pubs: make([]ed25519.PublicKey, n)}
	for i := range n {
		pub, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("fedsim.NewFleet: %w", err)
		}
		f.keys[i], f.pubs[i] = key, pub
	}
	return f, nil
}

// Len returns the number of clients.
func (f *Fleet) Len() int { return len(f.keys) }

// Update is one client's contribution to a round.
type Update struct {
	// Client is the client's index in the Fleet.
	Client int
	// Vector is what the client aggregates: its model delta, optionally
	// followed by metric coordinates (protocol.AppendUpdateMetrics).
	Vector []float32
	// Examples is the client's local example count, its FedAvg weight.
	Examples int
	// Drop makes the client vanish after sharing its keys, before its
	// masked input: SecAgg+ must then remove its pairwise masks from the
	// others' inputs; the plain mean simply goes without it.
	Drop bool
}

// Aggregator averages updates, securely or not.
type Aggregator struct {
	Fleet *Fleet
	// Secure selects SecAgg+; otherwise the plain weighted mean.
	Secure bool
	// Quantizer encodes inputs under SecAgg+. The zero value means the
	// coordinator's defaults: Clip 1, 16 bits, MaxWeight
	// coordinator.DefaultMaxWeight.
	Quantizer secagg.Quantizer
	// Neighbours (k) and Threshold (t) of SecAgg+; zero means secagg's
	// defaults (k = 2·ceil(log2 n), t = (k+1)/2 + 1).
	Neighbours, Threshold int
}

// RoundStats describe one aggregation.
type RoundStats struct {
	Survivors int           // updates in the mean
	Weight    float64       // total weight of the mean (examples, capped at MaxWeight each under SecAgg)
	BytesUp   int64         // encoded client → server messages
	BytesDown int64         // encoded server → client messages
	Duration  time.Duration // time spent aggregating, clients' crypto included
}

func (a *Aggregator) quantizer() secagg.Quantizer {
	q := a.Quantizer
	if q.Clip == 0 {
		q.Clip = 1
	}
	if q.Bits == 0 {
		q.Bits = 16
	}
	if q.MaxWeight == 0 {
		q.MaxWeight = coordinator.DefaultMaxWeight
	}
	return q
}

// Aggregate returns the example-weighted mean of the updates that do not
// drop. round names the round (it must differ between calls of one Fleet).
func (a *Aggregator) Aggregate(round int, ups []Update) ([]float32, RoundStats, error) {
	start := time.Now()
	var (
		mean []float32
		st   RoundStats
		err  error
	)
	if a.Secure {
		mean, st, err = a.secure(round, ups)
	} else {
		mean, st, err = plainMean(ups)
	}
	st.Duration = time.Since(start)
	return mean, st, err
}

// plainMean is the coordinator's aggregation without secure aggregation:
// a float64 running sum weighted by example counts.
func plainMean(ups []Update) ([]float32, RoundStats, error) {
	var st RoundStats
	var sum []float64
	for _, u := range ups {
		if u.Drop {
			continue
		}
		if sum == nil {
			sum = make([]float64, len(u.Vector))
		}
		if len(u.Vector) != len(sum) {
			return nil, st, fmt.Errorf("fedsim.plainMean: client %d sent %d values, want %d", u.Client, len(u.Vector), len(sum))
		}
		w := float64(u.Examples)
		for i, x := range u.Vector {
			sum[i] += w * float64(x)
		}
		st.Weight += w
		st.Survivors++
		st.BytesUp += int64(4*len(u.Vector) + 4)
	}
	if st.Survivors == 0 || st.Weight == 0 {
		return nil, st, ErrNoUpdates
	}
	mean := make([]float32, len(sum))
	for i, s := range sum {
		mean[i] = float32(s / st.Weight)
	}
	return mean, st, nil
}

// binaryMessage is a secagg message with its wire encoding.
type binaryMessage interface {
	MarshalBinary() ([]byte, error)
	UnmarshalBinary([]byte) error
}

// wire passes m through its binary encoding, as the transport would, and
// counts the bytes.
func wire[T any, PT interface {
	*T
	binaryMessage
}](m PT, bytes *int64) (PT, error) {
	b, err := m.MarshalBinary()
	if err != nil {
		return nil, err
	}
	*bytes += int64(len(b))
	out := PT(new(T))
	if err := out.UnmarshalBinary(b); err != nil {
		return nil, err
	}
	return out, nil
}

// secure runs one SecAgg+ round over ups: stage by stage, every client's
// message to the server and every reply through their binary encodings.
func (a *Aggregator) secure(round int, ups []Update) ([]float32, RoundStats, error) {
	var st RoundStats
	if len(ups) == 0 {
		return nil, st, ErrNoUpdates
	}
	q := a.quantizer()
	dim := len(ups[0].Vector)
	cfg := &secagg.Config{
		RoundID:    fmt.Appendf(nil, "%s/round/%d", a.Fleet.name, round),
		Neighbours: a.Neighbours, Threshold: a.Threshold,
		Dim: q.EncodedLen(dim), Quantizer: &q,
	}
	if _, err := rand.Read(cfg.GraphSeed[:]); err != nil {
		return nil, st, err
	}
	byID := map[uint32]*Update{}
	for i := range ups {
		u := &ups[i]
		if len(u.Vector) != dim {
			return nil, st, fmt.Errorf("fedsim.secure: client %d sent %d values, want %d", u.Client, len(u.Vector), dim)
		}
		id := uint32(u.Client + 1)
		byID[id] = u
		cfg.Participants = append(cfg.Participants, secagg.Participant{ID: id, SigningKey: a.Fleet.pubs[u.Client]})
	}
	srv, err := secagg.NewServer(cfg)
	if err != nil {
		return nil, st, fmt.Errorf("fedsim.secure: %w", err)
	}
	// Every client gets the round's config as the coordinator sends it.
	cfgBytes, err := cfg.MarshalBinary()
	if err != nil {
		return nil, st, err
	}
	clients := map[uint32]*secagg.Client{}
	for id, u := range byID {
		var c secagg.Config
		if err := c.UnmarshalBinary(cfgBytes); err != nil {
			return nil, st, fmt.Errorf("fedsim.secure: config: %w", err)
		}
		st.BytesDown += int64(len(cfgBytes))
		if clients[id], err = secagg.NewClient(&c, id, a.Fleet.keys[u.Client], nil); err != nil {
			return nil, st, fmt.Errorf("fedsim.secure: %w", err)
		}
	}

	// Stage 0: advertise keys.
	for _, p := range cfg.Participants {
		m, err := clients[p.ID].AdvertiseKeys()
		if err != nil {
			return nil, st, err
		}
		if m, err = wire(m, &st.BytesUp); err != nil {
			return nil, st, err
		}
		if err := srv.AddAdvertiseKeys(m); err != nil {
			return nil, st, err
		}
	}
	live, err := srv.EndAdvertiseKeys()
	if err != nil {
		return nil, st, err
	}
	// Stage 1: share keys.
	for _, id := range live {
		kl, err := srv.KeyList(id)
		if err != nil {
			return nil, st, err
		}
		if kl, err = wire(kl, &st.BytesDown); err != nil {
			return nil, st, err
		}
		m, err := clients[id].ShareKeys(kl)
		if err != nil {
			return nil, st, err
		}
		if m, err = wire(m, &st.BytesUp); err != nil {
			return nil, st, err
		}
		if err := srv.AddShareKeys(m); err != nil {
			return nil, st, err
		}
	}
	if live, err = srv.EndShareKeys(); err != nil {
		return nil, st, err
	}
	// Stage 2: masked inputs, encoded as agents encode them.
	x := make([]uint32, cfg.Dim)
	for _, id := range live {
		u := byID[id]
		sl, err := srv.ShareList(id)
		if err != nil {
			return nil, st, err
		}
		if sl, err = wire(sl, &st.BytesDown); err != nil {
			return nil, st, err
		}
		if u.Drop {
			continue // gone before sending its masked input
		}
		rng, err := cryptoRand()
		if err != nil {
			return nil, st, err
		}
		weight := uint32(min(uint64(u.Examples), uint64(q.MaxWeight)))
		if err := q.Encode(x, u.Vector, weight, rng); err != nil {
			return nil, st, fmt.Errorf("fedsim.secure: client %d: %w", u.Client, err)
		}
		m, err := clients[id].MaskedInput(sl, x)
		if err != nil {
			return nil, st, err
		}
		if m, err = wire(m, &st.BytesUp); err != nil {
			return nil, st, err
		}
		if err := srv.AddMaskedInput(m); err != nil {
			return nil, st, err
		}
	}
	u3, err := srv.EndMaskedInput()
	if err != nil {
		return nil, st, err
	}
	// Stage 3: consistency check on the survivor set.
	surv, err := srv.SurvivorList()
	if err != nil {
		return nil, st, err
	}
	for _, id := range u3 {
		sl, err := wire(surv, &st.BytesDown)
		if err != nil {
			return nil, st, err
		}
		m, err := clients[id].ConsistencyCheck(sl)
		if err != nil {
			return nil, st, err
		}
		if m, err = wire(m, &st.BytesUp); err != nil {
			return nil, st, err
		}
		if err := srv.AddConsistencyCheck(m); err != nil {
			return nil, st, err
		}
	}
	signers, err := srv.EndConsistencyCheck()
	if err != nil {
		return nil, st, err
	}
	// Stage 4: unmask.
	for _, id := range signers {
		sig, err := srv.SignatureList(id)
		if err != nil {
			return nil, st, err
		}
		if sig, err = wire(sig, &st.BytesDown); err != nil {
			return nil, st, err
		}
		m, err := clients[id].Unmask(sig)
		if err != nil {
			return nil, st, err
		}
		if m, err = wire(m, &st.BytesUp); err != nil {
			return nil, st, err
		}
		if err := srv.AddUnmask(m); err != nil {
			return nil, st, err
		}
	}
	res, err := srv.Finish()
	if err != nil {
		return nil, st, fmt.Errorf("fedsim.secure: %w", err)
	}
	mean := make([]float32, dim)
	w, err := q.DecodeMean(mean, res.Sum)
	if err != nil {
		return nil, st, fmt.Errorf("fedsim.secure: %w", err)
	}
	st.Survivors, st.Weight = len(res.Survivors), float64(w)
	return mean, st, nil
}

// cryptoRand returns a generator for stochastic rounding seeded from
// crypto/rand, as agents seed theirs.
func cryptoRand() (*mrand.Rand, error) {
	var seed [32]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, err
	}
	return mrand.New(mrand.NewChaCha8(seed)), nil
}
