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
	id uint64
	// owner is the job the round trains for, or "rollout/ID".
	owner string
	ids   map[string]uint32 // agent → SecAgg+ participant ID
	// models are the versions the round's agents download; their
	// downloads count in the round's bytes out.
	models []uint64

	mu        sync.Mutex
	stage     *stage
	stageType protocol.MsgType
	// gone are agents that left the round (withdrew, or their session
	// ended): no later stage waits for them.
	gone map[string]bool

	bytesIn, bytesOut atomic.Int64
	// busy accumulates the coordinator's own work in the round (decoding,
	// SecAgg+ server steps, aggregation), excluding time spent waiting for
	// agents: the "coordinator time per round" of the round record.
	busy atomic.Int64

	// uploads are masked inputs sent as bulk blobs (large models).
	uploads uploads
}

// timed runs f and adds its duration to the round's busy time.
func (r *activeRound) timed(f func() error) error {
	t := time.Now()
	err := f()
	r.busy.Add(int64(time.Since(t)))
	return err
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
	for a := range r.gone {
		st.withdraw(a)
	}
	r.mu.Unlock()
	return st
}

// withdraw removes an agent from the round: from the open stage's
// expected set and from every stage opened later. It reports whether the
// open stage was still waiting for the agent.
func (r *activeRound) withdraw(agent string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.gone == nil {
		r.gone = map[string]bool{}
	}
	r.gone[agent] = true
	return r.stage != nil && r.stage.withdraw(agent)
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
// that stage (it includes the local work). Each stage is opened before the
// previous one's replies go out, so a fast agent's next message always
// finds its stage.
func (e *Engine) runSecAgg(ctx context.Context, r *activeRound, rec *RoundRecord, cfg *secagg.Config, joined []string, start func(), trainBy time.Time, stageTime time.Duration) (*secagg.Result, error) {
	srv, err := secagg.NewServer(cfg)
	if err != nil {
		return nil, err
	}
	var smu sync.Mutex // the server is not safe for concurrent use
	locked := func(f func() error) error {
		smu.Lock()
		defer smu.Unlock()
		return r.timed(f)
	}
	// accept decodes an agent's stage message, binds its sender to the
	// authenticated agent, and hands it to the server.
	type decoder interface {
		UnmarshalBinary([]byte) error
	}
	accept := func(newMsg func() (decoder, func() uint32), add func(decoder) error) func(string, protocol.Message) error {
		return func(agent string, m protocol.Message) error {
			msg, from := newMsg()
			if err := r.timed(func() error { return msg.UnmarshalBinary(stagePayload(m)) }); err != nil {
				return err
			}
			if err := checkFrom(r.ids, agent, from()); err != nil {
				return err
			}
			return locked(func() error { return add(msg) })
		}
	}
	// finish waits for stage st, ends it on the server, opens the next
	// stage (if any) for the agents that go on, then releases st's replies.
	finish := func(st *stage, expected int, deadline time.Time, end func() ([]uint32, error), next func(ids []uint32) *stage, reply func(id uint32) (protocol.Message, error)) ([]uint32, *stage, error) {
		arrived, _ := st.wait(ctx, deadline)
		rec.Stages = append(rec.Stages, st.record(expected, len(arrived)))
		var ids []uint32
		if err := locked(func() (err error) { ids, err = end(); return }); err != nil {
			st.fail(err)
			return nil, nil, err
		}
		var nst *stage
		if next != nil {
			nst = next(ids)
		}
		replies := map[string]any{}
		for _, id := range ids {
			for agent, aid := range r.ids {
				if aid != id {
					continue
				}
				var m protocol.Message
				if err := r.timed(func() (err error) { m, err = reply(id); return }); err != nil {
					replies[agent] = err
				} else {
					replies[agent] = m
				}
			}
		}
		st.release(replies)
		return ids, nst, nil
	}
	marshal := func(m interface{ MarshalBinary() ([]byte, error) }, wrap func([]byte) protocol.Message) (protocol.Message, error) {
		b, err := m.MarshalBinary()
		if err != nil {
			return nil, err
		}
		return wrap(b), nil
	}
	openStage := func(name string, t protocol.MsgType, ids []uint32, acc func(string, protocol.Message) error) *stage {
		return r.open(name, t, r.agentsOf(ids), acc)
	}

	advertise := r.open("advertise_keys", protocol.TypeAdvertiseKeys, joined, accept(
		func() (decoder, func() uint32) {
			m := new(secagg.AdvertiseKeys)
			return m, func() uint32 { return m.From }
		},
		func(d decoder) error { return srv.AddAdvertiseKeys(d.(*secagg.AdvertiseKeys)) }))
	if start != nil {
		start()
	}
	ids, share, err := finish(advertise, len(joined), trainBy, srv.EndAdvertiseKeys,
		func(ids []uint32) *stage {
			return openStage("share_keys", protocol.TypeShareKeys, ids, accept(
				func() (decoder, func() uint32) { m := new(secagg.ShareKeys); return m, func() uint32 { return m.From } },
				func(d decoder) error { return srv.AddShareKeys(d.(*secagg.ShareKeys)) }))
		},
		func(id uint32) (protocol.Message, error) {
			kl, err := srv.KeyList(id)
			if err != nil {
				return nil, err
			}
			return marshal(kl, func(b []byte) protocol.Message { return &protocol.AdvertiseKeysRelay{RoundID: r.id, Payload: b} })
		})
	if err != nil {
		return nil, err
	}
	ids, masked, err := finish(share, len(ids), time.Now().Add(stageTime), srv.EndShareKeys,
		func(ids []uint32) *stage {
			// Masked inputs are summed straight from the wire bytes: the
			// stage streams them into the running sum and keeps none.
			r.uploads.expect(maskedInputLimit(cfg.Dim))
			return openStage("masked_input", protocol.TypeMaskedInput, ids, func(agent string, m protocol.Message) error {
				payload := stagePayload(m)
				if len(payload) == 0 {
					// Sent ahead as a bulk blob (protocol.MaxInlinePayload).
					var err error
					if payload, err = r.uploads.take(agent); err != nil {
						return err
					}
					r.bytesIn.Add(int64(len(payload)))
				}
				return locked(func() error { return srv.AddMaskedInputWire(payload, r.ids[agent]) })
			})
		},
		func(id uint32) (protocol.Message, error) {
			sl, err := srv.ShareList(id)
			if err != nil {
				return nil, err
			}
			return marshal(sl, func(b []byte) protocol.Message { return &protocol.ShareKeysRelay{RoundID: r.id, Payload: b} })
		})
	if err != nil {
		return nil, err
	}
	var survivors protocol.Message
	ids, check, err := finish(masked, len(ids), time.Now().Add(stageTime), func() ([]uint32, error) {
		ids, err := srv.EndMaskedInput()
		if err != nil {
			return nil, err
		}
		sl, err := srv.SurvivorList()
		if err != nil {
			return nil, err
		}
		survivors, err = marshal(sl, func(b []byte) protocol.Message { return &protocol.MaskedInputRelay{RoundID: r.id, Payload: b} })
		return ids, err
	},
		func(ids []uint32) *stage {
			return openStage("consistency_check", protocol.TypeConsistencyCheck, ids, accept(
				func() (decoder, func() uint32) {
					m := new(secagg.ConsistencyCheck)
					return m, func() uint32 { return m.From }
				},
				func(d decoder) error { return srv.AddConsistencyCheck(d.(*secagg.ConsistencyCheck)) }))
		},
		func(uint32) (protocol.Message, error) { return survivors, nil })
	if err != nil {
		return nil, err
	}
	ids, unmask, err := finish(check, len(ids), time.Now().Add(stageTime), srv.EndConsistencyCheck,
		func(ids []uint32) *stage {
			return openStage("unmask", protocol.TypeUnmask, ids, accept(
				func() (decoder, func() uint32) { m := new(secagg.Unmask); return m, func() uint32 { return m.From } },
				func(d decoder) error { return srv.AddUnmask(d.(*secagg.Unmask)) }))
		},
		func(id uint32) (protocol.Message, error) {
			sigs, err := srv.SignatureList(id)
			if err != nil {
				return nil, err
			}
			return marshal(sigs, func(b []byte) protocol.Message { return &protocol.ConsistencyCheckRelay{RoundID: r.id, Payload: b} })
		})
	if err != nil {
		return nil, err
	}
	var res *secagg.Result
	_, _, err = finish(unmask, len(ids), time.Now().Add(stageTime), func() ([]uint32, error) {
		var err error
		res, err = srv.Finish()
		if err != nil {
			return nil, err
		}
		return ids, nil
	}, nil, func(uint32) (protocol.Message, error) { return &protocol.UnmaskRelay{RoundID: r.id}, nil })
	if err != nil {
		return nil, err
	}
	return res, nil
}

// maskedInputLimit bounds the wire size of a masked input of dim ring
// elements: the vector and a header far smaller than the slack.
func maskedInputLimit(dim int) uint64 { return 4*uint64(dim) + 64<<10 }

// stagePayload is the SecAgg+ payload of an agent's stage message.
func stagePayload(m protocol.Message) []byte {
	switch v := m.(type) {
	case *protocol.AdvertiseKeys:
		return v.Payload
	case *protocol.ShareKeys:
		return v.Payload
	case *protocol.MaskedInput:
		return v.Payload
	case *protocol.ConsistencyCheck:
		return v.Payload
	case *protocol.Unmask:
		return v.Payload
	}
	return nil
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
