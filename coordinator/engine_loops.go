package coordinator

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"
)

// DefaultMaxConcurrentRounds is the default of
// Config.MaxConcurrentRounds: how many rounds (of different jobs,
// rollouts and explanation requests) the leader runs at once.
const DefaultMaxConcurrentRounds = 4

// Loop keys: a loop's key is its kind, then "/" and the job's or
// rollout's ID; the explanation queue has one loop, keyed loopExplain.
const (
	loopJob     = "job"
	loopRollout = "rollout"
	loopExplain = "explain"
)

// loopState is what other loops know of one loop: whether its last step
// waited for agents, and how many steps it tried.
type loopState struct {
	waiting bool
	tries   uint64
}

// loopKeys lists the loops that should run: one per running rollout, one
// per running job (oldest first) and the explanation queue's while it
// holds requests.
func (e *Engine) loopKeys() []string {
	var keys []string
	e.mu.Lock()
	if len(e.explains) > 0 {
		keys = append(keys, loopExplain)
	}
	e.mu.Unlock()
	e.fsm.Read(func(s *State) {
		for _, id := range sortedKeys(s.Rollouts) {
			if s.Rollouts[id].State == RolloutRunning {
				keys = append(keys, loopRollout+"/"+id)
			}
		}
		var jobs []*JobRecord
		for _, j := range s.Jobs {
			if j.State == JobRunning {
				jobs = append(jobs, j)
			}
		}
		sort.Slice(jobs, func(a, b int) bool {
			if !jobs[a].CreatedAt.Equal(jobs[b].CreatedAt) {
				return jobs[a].CreatedAt.Before(jobs[b].CreatedAt)
			}
			return jobs[a].ID < jobs[b].ID
		})
		for _, j := range jobs {
			keys = append(keys, loopJob+"/"+j.ID)
		}
	})
	return keys
}

// loop runs key's rounds one after another until key has no more work or
// ctx ends. It backs off after failures (agents busy or gone), so failed
// rounds do not flood the replicated log, and after a round it lets the
// loops that wait for agents try first, so a job whose rounds follow each
// other at once does not keep agents other jobs wait for.
func (e *Engine) loop(ctx context.Context, key string) {
	st := &loopState{}
	e.mu.Lock()
	e.loops[key] = st
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.loops, key)
		e.mu.Unlock()
		e.noteTried()
	}()
	fails := 0
	var lastWait time.Time // when "waiting for agents" was last logged
	for ctx.Err() == nil {
		wake := e.woken()
		did, err := e.step(ctx, key)
		if !did {
			return
		}
		short := errors.Is(err, ErrNotEnoughAgents)
		e.mu.Lock()
		st.waiting, st.tries = short, st.tries+1
		e.mu.Unlock()
		e.noteTried()
		if err == nil {
			fails = 0
			e.yield(ctx, key)
			continue
		}
		fails++
		if ctx.Err() != nil {
			return
		}
		if short {
			// Say why nothing happens, once a minute, not every poll.
			if time.Since(lastWait) > time.Minute {
				e.log.Info("waiting for agents", "loop", key, "why", err.Error())
				lastWait = time.Now()
			}
		} else {
			e.log.Warn("round", "loop", key, "err", err)
		}
		wait := e.cfg.Idle << min(fails, 6)
		wait = min(wait, max(e.cfg.Idle, 5*time.Second))
		if !short {
			wake = nil // nil blocks: only a shortage of agents ends early
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-t.C:
		case <-wake:
		}
		t.Stop()
	}
}

// yield waits, at most EngineConfig.Idle, until every other loop that
// waited for agents has tried again (the end of self's round woke them).
func (e *Engine) yield(ctx context.Context, self string) {
	type seen struct {
		st    *loopState
		tries uint64
	}
	e.mu.Lock()
	waiting := map[string]seen{}
	for k, st := range e.loops {
		if k != self && st.waiting {
			waiting[k] = seen{st, st.tries}
		}
	}
	e.mu.Unlock()
	if len(waiting) == 0 {
		return
	}
	t := time.NewTimer(e.cfg.Idle)
	defer t.Stop()
	for {
		e.mu.Lock()
		tried := e.tried
		for k, w := range waiting {
			if w.st.tries > w.tries || e.loops[k] != w.st {
				delete(waiting, k)
			}
		}
		e.mu.Unlock()
		if len(waiting) == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			return
		case <-tried:
		}
	}
}

// noteTried tells yielding loops that a loop tried a step or ended.
func (e *Engine) noteTried() {
	e.mu.Lock()
	close(e.tried)
	e.tried = make(chan struct{})
	e.mu.Unlock()
}

// poke wakes the loops that wait for agents and the loop scheduler: an
// agent connected, a round ended (its agents are free), an explanation
// was queued.
func (e *Engine) poke() {
	e.mu.Lock()
	close(e.wake)
	e.wake = make(chan struct{})
	e.mu.Unlock()
}

// woken returns a channel closed at the next poke.
func (e *Engine) woken() <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.wake
}

// activeRound returns the round in progress with ID id, or nil.
func (e *Engine) activeRound(id uint64) *activeRound {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.rounds[id]
}

// activeRounds returns the rounds in progress, by ID.
func (e *Engine) activeRounds() []*activeRound {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]*activeRound, 0, len(e.rounds))
	for _, id := range slices.Sorted(maps.Keys(e.rounds)) {
		out = append(out, e.rounds[id])
	}
	return out
}

// claim reserves for round the links that other rounds in progress do
// not hold as many times as their agents run rounds at once
// (roundsAtOnce), and returns them.
func (e *Engine) claim(round uint64, links []AgentLink) []AgentLink {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]AgentLink, 0, len(links))
	for _, l := range links {
		a := l.AgentID()
		if ids := e.claims[a]; !slices.Contains(ids, round) {
			if len(ids) >= roundsAtOnce(l) {
				continue
			}
			e.claims[a] = append(ids, round)
		}
		out = append(out, l)
	}
	return out
}

// dropClaim removes round from agent's claims; e.mu is held. It reports
// whether agent held round.
func (e *Engine) dropClaim(agent string, round uint64) bool {
	ids := e.claims[agent]
	i := slices.Index(ids, round)
	if i < 0 {
		return false
	}
	if len(ids) == 1 {
		delete(e.claims, agent)
		return true
	}
	e.claims[agent] = slices.Delete(slices.Clone(ids), i, i+1)
	return true
}

// unclaim frees the claimed links of round that did not join it.
func (e *Engine) unclaim(round uint64, claimed, joined []AgentLink) {
	in := make(map[string]bool, len(joined))
	for _, l := range joined {
		in[l.AgentID()] = true
	}
	freed := false
	e.mu.Lock()
	for _, l := range claimed {
		if a := l.AgentID(); !in[a] && e.dropClaim(a, round) {
			freed = true
		}
	}
	e.mu.Unlock()
	if freed {
		e.poke()
	}
}

// slots is a counting semaphore served first come, first served: a loop
// that just ended a round queues behind those already waiting.
type slots struct {
	mu    sync.Mutex
	free  int
	queue []chan struct{}
}

func newSlots(n int) *slots { return &slots{free: n} }

// acquire takes a slot, waiting for one if none is free, or returns
// ctx's error.
func (s *slots) acquire(ctx context.Context) error {
	s.mu.Lock()
	if s.free > 0 && len(s.queue) == 0 {
		s.free--
		s.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	s.queue = append(s.queue, ch)
	s.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		if i := slices.Index(s.queue, ch); i >= 0 {
			s.queue = slices.Delete(s.queue, i, i+1)
			s.mu.Unlock()
		} else {
			s.mu.Unlock()
			s.release() // granted meanwhile: hand it on
		}
		return ctx.Err()
	}
}

// release returns a slot: to the longest waiting acquire, if any.
func (s *slots) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) > 0 {
		close(s.queue[0])
		s.queue = s.queue[1:]
		return
	}
	s.free++
}
