package coordinator

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fedge/fedge/crypto/secagg"
	"github.com/fedge/fedge/protocol"
)

// activeRound is the round the engine is running: the open stage, the
// SecAgg+ server (or the plain aggregator when secure aggregation is off)
// and the byte counters of the round record.
type activeRound struct {
	id  uint64
	ids map[string]uint32 // agent → SecAgg+ participant ID

	mu        sync.Mutex
	stage     *stage
	stageType protocol.MsgType

	bytesIn, bytesOut atomic.Int64
}

// open starts a stage that accepts messages of type t from agents.
func (r *activeRound) open(name string, t protocol.MsgType, agents []string, accept func(agent string, m protocol.Message) error) *stage {
	st := newStage(name, agents, func(agent string, msg any) error {
		if accept == nil {
			return nil
		}
		return accept(agent, msg.(protocol.Message))
	})
	r.mu.Lock()
	r.stage, r.stageType = st, t
	r.mu.Unlock()
	return st
}

// close ends the round for any agent still blocked in a stage.
func (r *activeRound) close(err error) {
	r.mu.Lock()
	st := r.stage
	r.stage = nil
	r.mu.Unlock()
	if st != nil {
		select {
		case <-st.done:
		default:
			st.fail(err)
		}
	}
}

// deliver hands an agent's message to the open stage and returns its reply.
func (r *activeRound) deliver(ctx context.Context, agent string, m protocol.Message) (protocol.Message, error) {
	r.mu.Lock()
	st, t := r.stage, r.stageType
	r.mu.Unlock()
	if st == nil || m.Type() != t {
		return nil, fmt.Errorf("%w: round %d does not expect %s now", ErrStageClosed, r.id, m.Type())
	}
	r.bytesIn.Add(int64(messageSize(m)))
	reply, err := st.submit(ctx, agent, m)
	if err != nil {
		return nil, err
	}
	out, _ := reply.(protocol.Message)
	if out != nil {
		r.bytesOut.Add(int64(messageSize(out)))
	}
	return out, nil
}

// stageRun opens a stage for agents, calls opened (if not nil) once it
// accepts messages, waits for it with the deadline and returns who arrived.
// The caller releases it.
func (r *activeRound) stageRun(ctx context.Context, rec *RoundRecord, name string, t protocol.MsgType, agents []string, deadline time.Time, opened func(), accept func(agent string, m protocol.Message) error) (*stage, []string) {
	st := r.open(name, t, agents, accept)
	if opened != nil {
		opened()
	}
	arrived, _ := st.wait(ctx, deadline)
	rec.Stages = append(rec.Stages, st.record(len(agents), len(arrived)))
	return st, arrived
}

// secaggIDs numbers the round's agents 1..n in the order given.
func secaggIDs(links []AgentLink) (map[string]uint32, []secagg.Participant) {
	ids := make(map[string]uint32, len(links))
	parts := make([]secagg.Participant, len(links))
	for i, l := range links {
		id := uint32(i + 1)
		ids[l.AgentID()] = id
		parts[i] = secagg.Participant{ID: id, SigningKey: l.SigningKey()}
	}
	return ids, parts
}

// checkFrom binds a SecAgg+ message's claimed sender to the agent the
// transport authenticated.
func checkFrom(ids map[string]uint32, agent string, from uint32) error {
	if ids[agent] != from {
		return fmt.Errorf("%w: agent %s sent a message as participant %d", secagg.ErrForged, agent, from)
	}
	return nil
}

// runSecAgg drives the five SecAgg+ stages over the joined agents and
// returns the unmasked sum and the survivors. start sends the agents their
// work once the first stage accepts messages; trainBy is the deadline of
// that stage (it includes the local work).
func (e *Engine) runSecAgg(ctx context.Context, r *activeRound, rec *RoundRecord, cfg *secagg.Config, joined []string, start func(), trainBy time.Time, stageTime time.Duration) (*secagg.Result, error) {
	srv, err := secagg.NewServer(cfg)
	if err != nil {
		return nil, err
	}
	var smu sync.Mutex // the server is not safe for concurrent use
	locked := func(f func() error) error {
		smu.Lock()
		defer smu.Unlock()
		return f()
	}
	replyEach := func(st *stage, to []uint32, build func(id uint32) (protocol.Message, error)) {
		replies := map[string]any{}
		for agent, id := range r.ids {
			for _, t := range to {
				if t == id {
					m, err := build(id)
					if err != nil {
						replies[agent] = err
					} else {
						replies[agent] = m
					}
				}
			}
		}
		st.release(replies)
	}

	// Stage 0: AdvertiseKeys.
	st, _ := r.stageRun(ctx, rec, "advertise_keys", protocol.TypeAdvertiseKeys, joined, trainBy, start, func(agent string, m protocol.Message) error {
		var msg secagg.AdvertiseKeys
		if err := msg.UnmarshalBinary(m.(*protocol.AdvertiseKeys).Payload); err != nil {
			return err
		}
		if err := checkFrom(r.ids, agent, msg.From); err != nil {
			return err
		}
		return locked(func() error { return srv.AddAdvertiseKeys(&msg) })
	})
	var next []uint32
	if err := locked(func() (err error) { next, err = srv.EndAdvertiseKeys(); return }); err != nil {
		st.fail(err)
		return nil, err
	}
	replyEach(st, next, func(id uint32) (protocol.Message, error) {
		kl, err := srv.KeyList(id)
		if err != nil {
			return nil, err
		}
		b, err := kl.MarshalBinary()
		return &protocol.AdvertiseKeysRelay{RoundID: r.id, Payload: b}, err
	})

	// Stage 1: ShareKeys.
	st, _ = r.stageRun(ctx, rec, "share_keys", protocol.TypeShareKeys, r.agentsOf(next), time.Now().Add(stageTime), nil, func(agent string, m protocol.Message) error {
		var msg secagg.ShareKeys
		if err := msg.UnmarshalBinary(m.(*protocol.ShareKeys).Payload); err != nil {
			return err
		}
		if err := checkFrom(r.ids, agent, msg.From); err != nil {
			return err
		}
		return locked(func() error { return srv.AddShareKeys(&msg) })
	})
	if err := locked(func() (err error) { next, err = srv.EndShareKeys(); return }); err != nil {
		st.fail(err)
		return nil, err
	}
	replyEach(st, next, func(id uint32) (protocol.Message, error) {
		sl, err := srv.ShareList(id)
		if err != nil {
			return nil, err
		}
		b, err := sl.MarshalBinary()
		return &protocol.ShareKeysRelay{RoundID: r.id, Payload: b}, err
	})

	// Stage 2: MaskedInput, summed as it arrives.
	st, _ = r.stageRun(ctx, rec, "masked_input", protocol.TypeMaskedInput, r.agentsOf(next), time.Now().Add(stageTime), nil, func(agent string, m protocol.Message) error {
		var msg secagg.MaskedInput
		if err := msg.UnmarshalBinary(m.(*protocol.MaskedInput).Payload); err != nil {
			return err
		}
		if err := checkFrom(r.ids, agent, msg.From); err != nil {
			return err
		}
		return locked(func() error { return srv.AddMaskedInput(&msg) })
	})
	if err := locked(func() (err error) { next, err = srv.EndMaskedInput(); return }); err != nil {
		st.fail(err)
		return nil, err
	}
	sl, err := srv.SurvivorList()
	if err != nil {
		st.fail(err)
		return nil, err
	}
	slb, err := sl.MarshalBinary()
	if err != nil {
		st.fail(err)
		return nil, err
	}
	replyEach(st, next, func(uint32) (protocol.Message, error) {
		return &protocol.MaskedInputRelay{RoundID: r.id, Payload: slb}, nil
	})

	// Stage 3: ConsistencyCheck.
	st, _ = r.stageRun(ctx, rec, "consistency_check", protocol.TypeConsistencyCheck, r.agentsOf(next), time.Now().Add(stageTime), nil, func(agent string, m protocol.Message) error {
		var msg secagg.ConsistencyCheck
		if err := msg.UnmarshalBinary(m.(*protocol.ConsistencyCheck).Payload); err != nil {
			return err
		}
		if err := checkFrom(r.ids, agent, msg.From); err != nil {
			return err
		}
		return locked(func() error { return srv.AddConsistencyCheck(&msg) })
	})
	if err := locked(func() (err error) { next, err = srv.EndConsistencyCheck(); return }); err != nil {
		st.fail(err)
		return nil, err
	}
	replyEach(st, next, func(id uint32) (protocol.Message, error) {
		sigs, err := srv.SignatureList(id)
		if err != nil {
			return nil, err
		}
		b, err := sigs.MarshalBinary()
		return &protocol.ConsistencyCheckRelay{RoundID: r.id, Payload: b}, err
	})

	// Stage 4: Unmask.
	st, _ = r.stageRun(ctx, rec, "unmask", protocol.TypeUnmask, r.agentsOf(next), time.Now().Add(stageTime), nil, func(agent string, m protocol.Message) error {
		var msg secagg.Unmask
		if err := msg.UnmarshalBinary(m.(*protocol.Unmask).Payload); err != nil {
			return err
		}
		if err := checkFrom(r.ids, agent, msg.From); err != nil {
			return err
		}
		return locked(func() error { return srv.AddUnmask(&msg) })
	})
	var res *secagg.Result
	if err := locked(func() (err error) { res, err = srv.Finish(); return }); err != nil {
		st.fail(err)
		return nil, err
	}
	replyEach(st, next, func(uint32) (protocol.Message, error) {
		return &protocol.UnmaskRelay{RoundID: r.id}, nil
	})
	return res, nil
}

// agentsOf maps SecAgg+ IDs back to agent IDs.
func (r *activeRound) agentsOf(ids []uint32) []string {
	want := make(map[uint32]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	var out []string
	for agent, id := range r.ids {
		if want[id] {
			out = append(out, agent)
		}
	}
	return out
}
