package coordinator

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/fedge/fedge/crypto/secagg"
	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/protocol/stagedriver"
)

// Stage errors an agent can receive.
var (
	ErrStageClosed   = stagedriver.ErrStageClosed
	ErrNotInvited    = stagedriver.ErrNotInvited
	ErrDuplicate     = stagedriver.ErrDuplicate
	ErrRoundFinished = errors.New("coordinator: round finished")
)

// activeRound is the round the engine is running: its stages (a
// stagedriver.Round: the open stage and the agents that left), the
// SecAgg+ participant IDs, the byte counters of the round record and the
// masked inputs uploaded as bulk blobs.
type activeRound struct {
	stagedriver.Round

	id uint64
	// owner is the job the round trains for, or "rollout/ID".
	owner string
	ids   map[string]uint32 // agent → SecAgg+ participant ID
	// models are the versions the round's agents download; their
	// downloads count in the round's bytes out.
	models []uint64

	bytesIn, bytesOut atomic.Int64
	// busy accumulates the coordinator's own work in the round (decoding,
	// SecAgg+ server steps, aggregation), excluding time spent waiting for
	// agents: the "coordinator time per round" of the round record.
	busy atomic.Int64

	// uploads are masked inputs sent as bulk blobs (large models).
	uploads uploads
}

var _ stagedriver.Uploads = (*activeRound)(nil)

// timed runs f and adds its duration to the round's busy time.
func (r *activeRound) timed(f func() error) error {
	t := time.Now()
	err := f()
	r.busy.Add(int64(time.Since(t)))
	return err
}

// deliver hands an agent's message to the open stage and returns its
// reply, counting both in the round's bytes.
func (r *activeRound) deliver(ctx context.Context, agent string, m protocol.Message) (protocol.Message, error) {
	return r.Deliver(ctx, agent, m, func(m protocol.Message, reply bool) {
		if reply {
			r.bytesOut.Add(int64(messageSize(m)))
		} else {
			r.bytesIn.Add(int64(messageSize(m)))
		}
	})
}

// Expect opens the round to masked inputs uploaded as bulk blobs of at
// most limit bytes, added into sum as they arrive (stagedriver.Uploads).
func (r *activeRound) Expect(limit uint64, sum stagedriver.MaskedSum) { r.uploads.expect(limit, sum) }

// Take counts an agent's completed upload as its masked input and in the
// round's bytes in (stagedriver.Uploads).
func (r *activeRound) Take(agent string) error {
	if err := r.uploads.take(agent); err != nil {
		return err
	}
	r.bytesIn.Add(r.uploads.size(agent))
	return nil
}

// End ends the stage's uploads (stagedriver.Uploads).
func (r *activeRound) End() error { return r.uploads.close() }

// stageRun opens a stage for agents, calls opened (if not nil) once it
// accepts messages, waits for it with the deadline and returns who arrived.
// The caller releases it.
func (r *activeRound) stageRun(ctx context.Context, rec *RoundRecord, name string, t protocol.MsgType, agents []string, deadline time.Time, opened func(), accept func(agent string, m protocol.Message) error) (*stagedriver.Barrier, []string) {
	st := r.Open(name, t, agents, accept)
	if opened != nil {
		opened()
	}
	arrived, _ := st.Wait(ctx, deadline)
	rec.Stages = append(rec.Stages, stageRecord(st.Report(len(agents), len(arrived))))
	return st, arrived
}

// stageRecord is a stage's summary as the round record keeps it.
func stageRecord(s stagedriver.StageReport) StageRecord {
	return StageRecord{Name: s.Name, Expected: s.Expected, Survivors: s.Arrived, Dropped: s.Expected - s.Arrived, Duration: s.Took}
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

// runSecAgg drives the five SecAgg+ stages over the round's agents
// (r.ids) with a stagedriver.SecAgg and returns the unmasked sum. start
// sends the agents their work once the first stage accepts messages;
// trainBy is the deadline of that stage (it includes the local work). The
// stages go into the round record and the driver's work into the round's
// busy time.
func (e *Engine) runSecAgg(ctx context.Context, r *activeRound, rec *RoundRecord, cfg *secagg.Config, start func(), trainBy time.Time, stageTime time.Duration) (*secagg.Result, error) {
	d := &stagedriver.SecAgg{
		Round: &r.Round, RoundID: r.id, Config: cfg, IDs: r.ids,
		Start: start, FirstBy: trainBy, StageTime: stageTime, Uploads: r,
	}
	res, err := d.Run(ctx)
	r.busy.Add(int64(d.Busy()))
	for _, s := range d.Reports() {
		rec.Stages = append(rec.Stages, stageRecord(s))
	}
	return res, err
}
