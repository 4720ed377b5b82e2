package stagedriver

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fedge/fedge/crypto/secagg"
	"github.com/fedge/fedge/protocol"
)

// DefaultStageTime bounds a SecAgg+ stage when SecAgg.StageTime is zero.
const DefaultStageTime = 30 * time.Second

// Uploads receives the masked inputs that agents send ahead of their
// MaskedInput message as bulk blobs (protocol.MaxInlinePayload), adding
// each chunk into the round's running sum as it arrives, so the node
// holds one sum and not one vector per agent.
type Uploads interface {
	// Expect opens the round to uploads of masked inputs of at most limit
	// bytes, added into sum as they arrive. SecAgg calls it as the
	// masked-input stage opens.
	Expect(limit uint64, sum MaskedSum)
	// Take finishes agent's completed upload (MaskedWriter.Finish): its input
	// counts from now on. An error rejects the agent's MaskedInput
	// message.
	Take(agent string) error
	// End ends the uploads of the stage: what an upload not taken added
	// to the sum is taken out again, and no chunk is added after it
	// returns. SecAgg calls it before the masked-input stage ends; an
	// error fails the round (the sum could not be restored).
	End() error
}

// MaskedSum is a round's running sum of masked inputs, as uploads add
// into it.
type MaskedSum interface {
	// Stream returns a writer that adds agent's encoded masked input
	// (secagg's MaskedInput bytes) into the sum as its bytes arrive, in
	// order; with undo, one that subtracts what those bytes added.
	Stream(agent string, undo bool) (MaskedWriter, error)
}

// MaskedWriter adds one agent's masked input into a MaskedSum.
type MaskedWriter interface {
	io.Writer
	// Finish ends a stream whose every byte was written: the agent's
	// input is then in the sum and counts as sent.
	Finish() error
}

var _ MaskedSum = (*SecAgg)(nil)

// Stream implements MaskedSum on the driver's server; every write takes
// the server's lock.
func (d *SecAgg) Stream(agent string, undo bool) (MaskedWriter, error) {
	id, ok := d.IDs[agent]
	if !ok {
		return nil, fmt.Errorf("%w: agent %s is not in the round", secagg.ErrUnknownSender, agent)
	}
	var st *secagg.MaskedStream
	d.smu.Lock()
	if undo {
		st = d.srv.UndoMaskedStream(id)
	} else {
		st = d.srv.StreamMaskedInput(id)
	}
	d.smu.Unlock()
	return &maskedWriter{d: d, st: st}, nil
}

type maskedWriter struct {
	d  *SecAgg
	st *secagg.MaskedStream
}

func (w *maskedWriter) Write(p []byte) (n int, err error) {
	err = w.d.locked(func() error { n, err = w.st.Write(p); return err })
	return n, err
}

func (w *maskedWriter) Finish() error { return w.d.locked(w.st.Finish) }

// SecAgg drives the five SecAgg+ stages of one round over the agents that
// joined it and returns the unmasked sum. Set its fields, then call Run
// once; agents' messages reach the stages through Round.Deliver.
type SecAgg struct {
	// Round is where the stages open.
	Round *Round
	// RoundID is the round's ID, carried by the relays.
	RoundID uint64
	// Config is the round's SecAgg+ configuration, as the agents got it.
	Config *secagg.Config
	// IDs maps each agent that joined the round to its SecAgg+ participant
	// ID in Config.
	IDs map[string]uint32
	// Start, if not nil, is called once the first stage accepts messages:
	// it sends the agents their work.
	Start func()
	// FirstBy is the deadline of the first stage (advertise keys), which
	// includes the agents' local work. If zero, it is StageTime from Run.
	FirstBy time.Time
	// StageTime bounds each later stage. If zero, DefaultStageTime.
	StageTime time.Duration
	// Uploads, if not nil, holds masked inputs sent as bulk blobs: a
	// MaskedInput message with an empty payload takes its agent's upload.
	Uploads Uploads

	srv     *secagg.Server
	smu     sync.Mutex // the server is not safe for concurrent use
	busy    atomic.Int64
	rmu     sync.Mutex
	reports []StageReport
}

// step is one SecAgg+ stage: the message it takes, how the server adds
// it, ends the stage and answers each participant that goes on.
type step struct {
	name   string
	typ    protocol.MsgType
	accept func(agent string, m protocol.Message) error
	// end closes the stage on the server and returns the participants
	// that go on.
	end   func() ([]uint32, error)
	reply func(id uint32) (protocol.Message, error)
}

// Run drives the stages and returns the server's result. Each stage closes
// when every agent still in the round has spoken or at its deadline; each
// is opened before the previous one's replies go out, so a fast agent's
// next message always finds its stage. An error ends the round for every
// agent waiting in the failing stage.
func (d *SecAgg) Run(ctx context.Context) (*secagg.Result, error) {
	srv, err := secagg.NewServer(d.Config)
	if err != nil {
		return nil, fmt.Errorf("stagedriver.SecAgg: %w", err)
	}
	d.srv = srv
	stageTime := d.StageTime
	if stageTime == 0 {
		stageTime = DefaultStageTime
	}
	deadline := d.FirstBy
	if deadline.IsZero() {
		deadline = time.Now().Add(stageTime)
	}
	var res *secagg.Result
	steps := d.steps(func() (err error) { res, err = srv.Finish(); return err })
	agents := slices.Sorted(maps.Keys(d.IDs))
	st := d.Round.Open(steps[0].name, steps[0].typ, agents, steps[0].accept)
	if d.Start != nil {
		d.Start()
	}
	expected := len(agents)
	for i, s := range steps {
		arrived, _ := st.Wait(ctx, deadline)
		d.report(st.Report(expected, len(arrived)))
		if s.typ == protocol.TypeMaskedInput && d.Uploads != nil {
			// Before the sum is read: unfinished uploads leave it.
			if err := d.Uploads.End(); err != nil {
				st.Fail(err)
				return nil, err
			}
		}
		var ids []uint32
		if err := d.locked(func() (err error) { ids, err = s.end(); return err }); err != nil {
			st.Fail(err)
			return nil, err
		}
		var next *Barrier
		if i+1 < len(steps) {
			n := steps[i+1]
			if n.typ == protocol.TypeMaskedInput && d.Uploads != nil {
				d.Uploads.Expect(MaskedInputLimit(d.Config.Dim), d)
			}
			next = d.Round.Open(n.name, n.typ, d.agentsOf(ids), n.accept)
		}
		st.Release(d.replies(ids, s.reply))
		st, expected, deadline = next, len(ids), time.Now().Add(stageTime)
	}
	return res, nil
}

// steps lists the five stages on d's server; finish computes the result.
func (d *SecAgg) steps(finish func() error) []step {
	srv := d.srv
	var survivors protocol.Message // the same SurvivorList for everyone
	var last []uint32              // who the unmask stage waited for
	return []step{{
		name: "advertise_keys", typ: protocol.TypeAdvertiseKeys,
		accept: acceptFrom(d, func(m *secagg.AdvertiseKeys) uint32 { return m.From }, srv.AddAdvertiseKeys),
		end:    srv.EndAdvertiseKeys,
		reply: func(id uint32) (protocol.Message, error) {
			return relay(id, srv.KeyList, func(b []byte) protocol.Message { return &protocol.AdvertiseKeysRelay{RoundID: d.RoundID, Payload: b} })
		},
	}, {
		name: "share_keys", typ: protocol.TypeShareKeys,
		accept: acceptFrom(d, func(m *secagg.ShareKeys) uint32 { return m.From }, srv.AddShareKeys),
		end:    srv.EndShareKeys,
		reply: func(id uint32) (protocol.Message, error) {
			return relay(id, srv.ShareList, func(b []byte) protocol.Message { return &protocol.ShareKeysRelay{RoundID: d.RoundID, Payload: b} })
		},
	}, {
		// Masked inputs are summed straight from the wire bytes: the stage
		// streams them into the running sum and keeps none.
		name: "masked_input", typ: protocol.TypeMaskedInput,
		accept: d.acceptMasked,
		end: func() ([]uint32, error) {
			ids, err := srv.EndMaskedInput()
			if err != nil {
				return nil, err
			}
			survivors, err = relay(0, func(uint32) (*secagg.SurvivorList, error) { return srv.SurvivorList() },
				func(b []byte) protocol.Message { return &protocol.MaskedInputRelay{RoundID: d.RoundID, Payload: b} })
			return ids, err
		},
		reply: func(uint32) (protocol.Message, error) { return survivors, nil },
	}, {
		name: "consistency_check", typ: protocol.TypeConsistencyCheck,
		accept: acceptFrom(d, func(m *secagg.ConsistencyCheck) uint32 { return m.From }, srv.AddConsistencyCheck),
		end: func() ([]uint32, error) {
			ids, err := srv.EndConsistencyCheck()
			last = ids
			return ids, err
		},
		reply: func(id uint32) (protocol.Message, error) {
			return relay(id, srv.SignatureList, func(b []byte) protocol.Message {
				return &protocol.ConsistencyCheckRelay{RoundID: d.RoundID, Payload: b}
			})
		},
	}, {
		name: "unmask", typ: protocol.TypeUnmask,
		accept: acceptFrom(d, func(m *secagg.Unmask) uint32 { return m.From }, srv.AddUnmask),
		end:    func() ([]uint32, error) { return last, finish() },
		reply:  func(uint32) (protocol.Message, error) { return &protocol.UnmaskRelay{RoundID: d.RoundID}, nil },
	}}
}

// acceptFrom returns the accept function of a stage whose payload decodes
// to a P sent by participant from(P): it decodes the message, binds its
// sender to the agent the transport authenticated, and hands it to add.
func acceptFrom[T any, P interface {
	*T
	UnmarshalBinary([]byte) error
}](d *SecAgg, from func(P) uint32, add func(P) error) func(string, protocol.Message) error {
	return func(agent string, m protocol.Message) error {
		msg := P(new(T))
		if err := d.timed(func() error { b, _ := protocol.StagePayload(m); return msg.UnmarshalBinary(b) }); err != nil {
			return err
		}
		if d.IDs[agent] != from(msg) {
			return fmt.Errorf("%w: agent %s sent a message as participant %d", secagg.ErrForged, agent, from(msg))
		}
		return d.locked(func() error { return add(msg) })
	}
}

// acceptMasked adds an agent's masked input, inline or uploaded ahead,
// to the running sum.
func (d *SecAgg) acceptMasked(agent string, m protocol.Message) error {
	payload, _ := protocol.StagePayload(m)
	if len(payload) == 0 && d.Uploads != nil {
		return d.Uploads.Take(agent) // added chunk by chunk as it arrived
	}
	return d.locked(func() error { return d.srv.AddMaskedInputWire(payload, d.IDs[agent]) })
}

// relay marshals the server's answer for participant id into a relay
// message made by wrap.
func relay[M interface{ MarshalBinary() ([]byte, error) }](id uint32, get func(uint32) (M, error), wrap func(payload []byte) protocol.Message) (protocol.Message, error) {
	m, err := get(id)
	if err != nil {
		return nil, err
	}
	b, err := m.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return wrap(b), nil
}

// replies computes the reply of every agent whose participant ID is in
// ids (an error in place of a reply drops that agent).
func (d *SecAgg) replies(ids []uint32, reply func(uint32) (protocol.Message, error)) map[string]any {
	goOn := make(map[uint32]bool, len(ids))
	for _, id := range ids {
		goOn[id] = true
	}
	out := make(map[string]any, len(ids))
	for agent, id := range d.IDs {
		if !goOn[id] {
			continue
		}
		var m protocol.Message
		if err := d.timed(func() (err error) { m, err = reply(id); return err }); err != nil {
			out[agent] = err
		} else {
			out[agent] = m
		}
	}
	return out
}

// agentsOf maps SecAgg+ IDs back to agent IDs.
func (d *SecAgg) agentsOf(ids []uint32) []string {
	want := make(map[uint32]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	var out []string
	for agent, id := range d.IDs {
		if want[id] {
			out = append(out, agent)
		}
	}
	slices.Sort(out)
	return out
}

// timed runs f and adds its duration to the driver's busy time.
func (d *SecAgg) timed(f func() error) error {
	t := time.Now()
	err := f()
	d.busy.Add(int64(time.Since(t)))
	return err
}

// locked runs f on the server, timed.
func (d *SecAgg) locked(f func() error) error {
	d.smu.Lock()
	defer d.smu.Unlock()
	return d.timed(f)
}

func (d *SecAgg) report(r StageReport) {
	d.rmu.Lock()
	d.reports = append(d.reports, r)
	d.rmu.Unlock()
}

// Busy is the time the driver spent on its own work (decoding, server
// steps, replies), not waiting for agents.
func (d *SecAgg) Busy() time.Duration { return time.Duration(d.busy.Load()) }

// Reports summarizes the stages Run waited for, in order, including a
// stage that failed.
func (d *SecAgg) Reports() []StageReport {
	d.rmu.Lock()
	defer d.rmu.Unlock()
	return slices.Clone(d.reports)
}

// MaskedInputLimit bounds the wire size of a masked input of dim ring
// elements: the vector and a header far smaller than the slack.
func MaskedInputLimit(dim int) uint64 { return 4*uint64(dim) + 64<<10 }
