package sim

import (
	"bytes"
	"context"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/fedge/fedge/crypto/secagg"
	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/tensor"
)

// software names the simulator in Hello messages.
const software = "fedge-simulate"

// fleet is what the virtual agents share.
type fleet struct {
	ctx     context.Context
	opts    *Options
	log     *slog.Logger
	data    *tensor.Dataset // the training pool; agents hold indices
	classes int
	models  *modelCache
	dialers []*protocol.Dialer
	pool    chan struct{} // one token per worker
	uploads chan struct{} // one token per trained update in memory
	secaggs secaggConfigs
	agents  []*vagent
	// dials bounds the fleet's QUIC handshakes in flight (Options.Handshakes),
	// to the leader and, in sharded rounds, to group coordinators.
	dials chan struct{}

	connected atomic.Int64
	leader    atomic.Pointer[string] // the coordinator that last led, as an agent found
	stats     struct {
		completed, failed  atomic.Int64
		bytesUp, bytesDown atomic.Int64
		// held counts the trained updates (plain payloads or SecAgg+
		// inputs) in memory, peak its most at once.
		held, peak atomic.Int64
	}
}

// holdUpdate takes one of the fleet's upload slots for a trained update
// (the plain payload, or the SecAgg+ input and its masked form) until
// the returned function drops it, once the update is written to the
// agent's session: agents that finished training wait for a slot, so
// however slowly the coordinator reads, the fleet holds at most
// cap(uploads) updates.
func (f *fleet) holdUpdate(ctx context.Context) (drop func(), err error) {
	select {
	case f.uploads <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	n := f.stats.held.Add(1)
	for {
		p := f.stats.peak.Load()
		if n <= p || f.stats.peak.CompareAndSwap(p, n) {
			break
		}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			f.stats.held.Add(-1)
			<-f.uploads
		})
	}, nil
}

// dialer returns the shared socket agent i dials from.
func (f *fleet) dialer(i int) *protocol.Dialer { return f.dialers[i%len(f.dialers)] }

// leaderHint returns the leader an agent found last, else def.
func (f *fleet) leaderHint(def string) string {
	if p := f.leader.Load(); p != nil {
		return *p
	}
	return def
}

// work runs fn holding a worker of the pool.
func (f *fleet) work(ctx context.Context, fn func() error) error {
	select {
	case f.pool <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-f.pool }()
	return fn()
}

// status is what a virtual agent reports in its heartbeats.
func (f *fleet) status(n int) *protocol.AgentStatus {
	return &protocol.AgentStatus{
		DataKind: f.opts.Dataset.Kind, Features: uint32(f.data.Features()), Classes: uint32(f.classes),
		TrainExamples: uint64(n), Trainer: "engine",
	}
}

// secaggConfigs holds the decoded and compiled SecAgg+ configurations of
// the latest rounds, shared read only by the round's virtual agents: a
// config lists every participant (public keys), so one copy (and one
// compilation) per agent would cost n² for a round of n agents (a live
// heap of 5.4 GB at 5,000).
type secaggConfigs struct {
	mu sync.Mutex
	// rounds hold, per round, one config per group of a sharded round
	// (each group has its own).
	rounds map[uint64][]*secaggConfig
}

type secaggConfig struct {
	raw   []byte
	cfg   *secagg.Config
	round *secagg.Round // cfg compiled once for every agent's client
}

// keepConfigs is how many rounds' configurations secaggConfigs keeps.
const keepConfigs = 2

// get returns the decoded and compiled config of round whose encoding is
// raw, decoding raw if no agent of its group has yet.
func (c *secaggConfigs) get(round uint64, raw []byte) (*secagg.Config, *secagg.Round, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.rounds[round] {
		if bytes.Equal(e.raw, raw) {
			return e.cfg, e.round, nil
		}
	}
	cfg := new(secagg.Config)
	if err := cfg.UnmarshalBinary(raw); err != nil {
		return nil, nil, err
	}
	compiled, err := cfg.Compile()
	if err != nil {
		return nil, nil, err
	}
	if c.rounds == nil {
		c.rounds = map[uint64][]*secaggConfig{}
	}
	c.rounds[round] = append(c.rounds[round], &secaggConfig{raw: bytes.Clone(raw), cfg: cfg, round: compiled})
	for len(c.rounds) > keepConfigs {
		delete(c.rounds, slices.Min(slices.Collect(maps.Keys(c.rounds))))
	}
	return cfg, compiled, nil
}
