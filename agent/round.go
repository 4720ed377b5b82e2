package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/fedge/fedge/protocol"
)

// Round timing.
const (
	// deadlineGrace is added to every stage deadline of an invite: the
	// coordinator replies to a stage message when the stage closes, at its
	// deadline at the latest.
	deadlineGrace = 5 * time.Second
	// defaultRoundTime bounds a round whose invite carries no deadline.
	defaultRoundTime = 10 * time.Minute
)

// Causes of a round's end other than its work finishing.
var (
	// errAborted is the cause of a round cancelled by RoundAbort.
	errAborted = errors.New("agent: round aborted by the coordinator")
	// errSessionLost is the cause of a round whose session ended: the
	// round's coordinator is gone (or has dropped the agent from the
	// round), so the agent is free for the next leader's invites.
	errSessionLost = errors.New("agent: the session that carried the round ended")
)

// roundState is the round the agent accepted; at most one at a time.
type roundState struct {
	invite *protocol.RoundInvite
	grace  time.Duration // added to each stage deadline
	ctx    context.Context
	cancel context.CancelCauseFunc
	start  chan roundStart // the plan or evaluation request, once
	sent   atomic.Uint64   // payload bytes sent
	stage  atomic.Uint32   // protocol.Stage reached
}

type roundStart struct {
	c conn
	m protocol.Message // *protocol.RoundPlan, *protocol.EvalRequest, *protocol.StatsRequest or *protocol.ExplainRequest
}

// deadline returns the invite's deadline of stage s plus the grace, or the
// round's context deadline when the invite has none.
func (st *roundState) deadline(s protocol.Stage) time.Time {
	if t, ok := st.invite.Deadline(s); ok {
		return t.Add(st.grace)
	}
	d, _ := st.ctx.Deadline()
	return d
}

// sessionHandler serves what the coordinator pushes on an agent session.
type sessionHandler struct{ a *Agent }

var _ protocol.Handler = sessionHandler{}

// Hello is never called on the dialing side.
func (h sessionHandler) Hello(context.Context, *protocol.Session, *protocol.Hello) (*protocol.HelloAck, error) {
	return nil, &protocol.Error{Code: protocol.CodeUnsupported, Message: "agents do not accept sessions"}
}

// ServeMessage answers invites and starts, aborts and announces; the
// rounds themselves run on their own goroutines so it returns at once.
func (h sessionHandler) ServeMessage(ctx context.Context, s *protocol.Session, m protocol.Message) (protocol.Message, error) {
	return h.a.serve(s, m)
}

// ServeBulk refuses: coordinators open no bulk streams to agents.
func (h sessionHandler) ServeBulk(context.Context, *protocol.Session, protocol.Message, *protocol.BulkStream) error {
	return &protocol.Error{Code: protocol.CodeUnsupported, Message: "agents accept no bulk streams"}
}

// serve handles one pushed message from the coordinator on session c.
func (a *Agent) serve(c conn, m protocol.Message) (protocol.Message, error) {
	switch v := m.(type) {
	case *protocol.RoundInvite:
		return a.onInvite(c, v), nil
	case *protocol.RoundPlan:
		a.onStart(v.RoundID, roundStart{c, v})
		return nil, nil
	case *protocol.EvalRequest:
		a.onStart(v.RoundID, roundStart{c, v})
		return nil, nil
	case *protocol.StatsRequest:
		a.onStart(v.RoundID, roundStart{c, v})
		return nil, nil
	case *protocol.PrepRequest:
		a.onStart(v.RoundID, roundStart{c, v})
		return nil, nil
	case *protocol.ExplainRequest:
		a.onStart(v.RoundID, roundStart{c, v})
		return nil, nil
	case *protocol.RoundAbort:
		a.onAbort(v)
		return nil, nil
	case *protocol.ModelAnnounce:
		a.mu.Lock()
		ctx := a.runCtx
		a.mu.Unlock()
		if ctx != nil {
			a.startSync(ctx, c, v)
		}
		return &protocol.Ack{}, nil
	}
	return nil, &protocol.Error{Code: protocol.CodeUnsupported, Message: m.Type().String()}
}

// onInvite accepts a round if the agent is free, inside its training
// window and holds the data the round needs, and starts the goroutine that
// waits for the plan. The round ends if the session c it came on ends.
func (a *Agent) onInvite(c conn, inv *protocol.RoundInvite) *protocol.RoundJoin {
	decline := func(reason string) *protocol.RoundJoin {
		a.log.Info("declined round", "round", inv.RoundID, "reason", reason)
		return &protocol.RoundJoin{RoundID: inv.RoundID, Reason: reason}
	}
	if inv.Job != "" && !a.cfg.Jobs.acceptsJob(inv.Job) { // a rollout's evaluation names no job
		return decline(fmt.Sprintf("job %s is not accepted by this agent (jobs.allow %q)", inv.Job, a.cfg.Jobs.Allow))
	}
	now := a.now()
	if !a.win.contains(now) {
		return decline("outside the training window " + a.cfg.TrainingWindow)
	}
	nTrain, nHeld := a.data.sizes()
	switch inv.Kind {
	case protocol.RoundTrain, protocol.RoundStats:
		if nTrain == 0 && !(inv.Kind == protocol.RoundTrain && a.cfg.Trainer.enabled()) {
			return decline("no local training data")
		}
	case protocol.RoundEval:
		if nHeld == 0 && !a.cfg.Trainer.enabled() {
			return decline("no local held-out data")
		}
	case protocol.RoundPrep:
		if a.data.raw == nil || nTrain == 0 {
			return decline("no local CSV training data for the job's data.columns")
		}
	case protocol.RoundExplain:
		if nHeld == 0 {
			return decline("no local held-out data")
		}
	default:
		return decline(fmt.Sprintf("unknown round kind %d", inv.Kind))
	}
	end := now.Add(defaultRoundTime)
	if n := len(inv.Deadlines); n > 0 {
		end = inv.Deadlines[0].At
		for _, d := range inv.Deadlines {
			if d.At.After(end) {
				end = d.At
			}
		}
		if !end.After(now) {
			return decline("the round's deadlines have passed")
		}
	}
	a.mu.Lock()
	if busy := a.busyWith(inv.Job); busy != "" {
		a.mu.Unlock()
		return decline(busy)
	}
	parent := a.runCtx
	if parent == nil || a.stopping {
		a.mu.Unlock()
		return decline("agent is not running")
	}
	ctx, cancel := context.WithDeadline(parent, end.Add(a.grace))
	cctx, ccancel := context.WithCancelCause(ctx)
	st := &roundState{invite: inv, grace: a.grace, ctx: cctx, start: make(chan roundStart, 1),
		cancel: func(err error) { ccancel(err); cancel() }}
	if a.rounds == nil {
		a.rounds = map[uint64]*roundState{}
	}
	a.rounds[inv.RoundID] = st
	a.bg.Add(1)
	a.mu.Unlock()

	if err := a.st.setProgress(progress{roundID: inv.RoundID, kind: uint8(inv.Kind), updated: now}, true); err != nil {
		a.log.Warn("recording round progress", "err", err)
	}
	a.m.roundsJoined.Add(1)
	if s, ok := c.(interface{ Done() <-chan struct{} }); ok {
		go func() {
			select {
			case <-s.Done():
				st.cancel(errSessionLost)
			case <-cctx.Done():
			}
		}()
	}
	go a.runRound(st)
	a.log.Info("joined round", "round", inv.RoundID, "job", inv.Job, "kind", kindName(inv.Kind), "ends", end)
	return &protocol.RoundJoin{RoundID: inv.RoundID, Accept: true}
}

// busyWith says why the agent cannot join a round of job now: a round
// of the same job runs, or as many rounds as Config.Jobs.Concurrent
// allows (one by default, so that two jobs never train at once); "" if
// it can. The caller holds a.mu.
func (a *Agent) busyWith(job string) string {
	ids := make([]uint64, 0, len(a.rounds))
	for id := range a.rounds {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	if len(ids) >= a.cfg.Jobs.concurrent() {
		return fmt.Sprintf("busy with round %d", ids[0])
	}
	for _, id := range ids {
		if a.rounds[id].invite.Job == job {
			return fmt.Sprintf("busy with round %d of the same job", id)
		}
	}
	return ""
}

func kindName(k protocol.RoundKind) string {
	switch k {
	case protocol.RoundEval:
		return "eval"
	case protocol.RoundStats:
		return "stats"
	case protocol.RoundPrep:
		return "prep"
	case protocol.RoundExplain:
		return "explain"
	}
	return "train"
}

// onStart hands the plan or evaluation request to the round's goroutine.
func (a *Agent) onStart(roundID uint64, rs roundStart) {
	a.mu.Lock()
	st := a.rounds[roundID]
	a.mu.Unlock()
	if st == nil {
		a.log.Debug("start of a round the agent did not join", "round", roundID, "type", rs.m.Type())
		return
	}
	select {
	case st.start <- rs:
	default: // a duplicate start: the first one runs
	}
}

func (a *Agent) onAbort(m *protocol.RoundAbort) {
	a.mu.Lock()
	st := a.rounds[m.RoundID]
	a.mu.Unlock()
	if st != nil {
		a.log.Info("round aborted by the coordinator", "round", m.RoundID, "reason", m.Reason)
		st.cancel(errAborted)
	}
}

// runRound waits for the round's plan and runs it.
func (a *Agent) runRound(st *roundState) {
	id := st.invite.RoundID
	completed := false
	defer func() {
		st.cancel(context.Canceled)
		a.mu.Lock()
		if a.rounds[id] == st {
			delete(a.rounds, id)
		}
		a.mu.Unlock()
		if completed {
			a.m.roundsCompleted.Add(1)
		} else {
			a.m.roundsFailed.Add(1)
		}
		if err := a.st.endRound(id, completed, st.sent.Load()); err != nil {
			a.log.Debug("recording round end", "err", err)
		}
		a.bg.Done()
	}()
	wait := time.NewTimer(time.Until(st.deadline(protocol.StageTrain)))
	defer wait.Stop()
	var rs roundStart
	select {
	case rs = <-st.start:
	case <-st.ctx.Done():
		a.log.Info("round ended before it started", "round", id, "why", context.Cause(st.ctx))
		return
	case <-wait.C:
		a.log.Info("no plan arrived for the round; leaving it", "round", id)
		return
	}
	start := time.Now()
	var err error
	switch m := rs.m.(type) {
	case *protocol.RoundPlan:
		if st.invite.Kind != protocol.RoundTrain {
			err = errors.New("training plan for an evaluation round")
			break
		}
		err = a.trainRound(st.ctx, rs.c, st, m)
	case *protocol.EvalRequest:
		if st.invite.Kind != protocol.RoundEval {
			err = errors.New("evaluation request for a training round")
			break
		}
		err = a.evalRound(st.ctx, rs.c, st, m)
	case *protocol.StatsRequest:
		if st.invite.Kind != protocol.RoundStats {
			err = errors.New("statistics request for another kind of round")
			break
		}
		err = a.statsRound(st.ctx, rs.c, st, m)
	case *protocol.PrepRequest:
		if st.invite.Kind != protocol.RoundPrep {
			err = errors.New("data preparation request for another kind of round")
			break
		}
		err = a.prepRound(st.ctx, rs.c, st, m)
	case *protocol.ExplainRequest:
		if st.invite.Kind != protocol.RoundExplain {
			err = errors.New("explanation request for another kind of round")
			break
		}
		err = a.explainRound(st.ctx, rs.c, st, m)
	}
	took := time.Since(start).Round(time.Millisecond)
	switch {
	case err == nil:
		completed = true
		a.log.Info("round done", "round", id, "kind", kindName(st.invite.Kind), "bytes_sent", st.sent.Load(), "took", took)
	case context.Cause(st.ctx) != nil && st.ctx.Err() != nil:
		a.log.Info("left round", "round", id, "stage", st.stage.Load(), "why", context.Cause(st.ctx), "took", took)
	default:
		a.log.Warn("left round", "round", id, "stage", st.stage.Load(), "err", err, "took", took)
		// Tell the coordinator, so the round does not wait out its deadline
		// for this agent (best effort: it may already be gone).
		wctx, cancel := context.WithTimeout(context.WithoutCancel(st.ctx), 5*time.Second)
		_, _ = rs.c.Request(wctx, &protocol.RoundJoin{RoundID: id, Accept: false, Reason: truncateReason(err.Error())})
		cancel()
	}
}

// truncateReason bounds a withdrawal reason, keeping it valid UTF-8.
func truncateReason(s string) string {
	const limit = 200
	if len(s) <= limit {
		return s
	}
	s = s[:limit]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// request sends one stage message of the round, with the stage's deadline,
// and counts its payload.
func (a *Agent) request(ctx context.Context, c conn, st *roundState, s protocol.Stage, m protocol.Message, payload int) (protocol.Message, error) {
	st.stage.Store(uint32(s))
	if err := a.st.setProgress(progress{roundID: st.invite.RoundID, kind: uint8(st.invite.Kind), stage: uint8(s), updated: a.now()}, false); err != nil {
		a.log.Debug("recording round progress", "err", err)
	}
	rctx, cancel := context.WithDeadline(ctx, st.deadline(s))
	defer cancel()
	n := uint64(payload + 16) // + frame header and round ID
	st.sent.Add(n)
	a.m.bytesSent.Add(n)
	resp, err := c.Request(rctx, m)
	if err != nil {
		return nil, fmt.Errorf("stage %d: %w", s, err)
	}
	return resp, nil
}
