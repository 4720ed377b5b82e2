package coordinator

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Stage errors an agent can receive.
var (
	ErrStageClosed   = errors.New("coordinator: stage closed (deadline passed or round ended)")
	ErrNotInvited    = errors.New("coordinator: not a participant of this stage")
	ErrDuplicate     = errors.New("coordinator: message already received for this stage")
	ErrRoundFinished = errors.New("coordinator: round finished")
)

// stage is one barrier of a round: the engine opens it for the agents
// still in the round, each agent submits one message (its handler blocks
// in submit), and when all have arrived or the deadline passes the engine
// computes a reply for each and releases them. Messages are handed to
// accept as they arrive, so a stage that aggregates (masked inputs) never
// holds every message at once.
type stage struct {
	name    string
	mu      sync.Mutex
	waiting map[string]bool // expected and not yet arrived
	arrived []string        // in arrival order
	closed  bool
	full    chan struct{} // closed when every expected agent has arrived
	done    chan struct{} // closed when replies are ready
	replies map[string]any
	err     error // for everyone, if the stage failed
	accept  func(agent string, msg any) error
	opened  time.Time
}

// newStage opens a barrier for the given agents. accept, if not nil, is
// called under the stage's lock for each message as it arrives; an error
// rejects that message (the agent gets it at once and stays expected).
func newStage(name string, agents []string, accept func(agent string, msg any) error) *stage {
	s := &stage{
		name: name, waiting: make(map[string]bool, len(agents)),
		full: make(chan struct{}), done: make(chan struct{}),
		replies: map[string]any{}, accept: accept, opened: time.Now(),
	}
	for _, a := range agents {
		s.waiting[a] = true
	}
	if len(agents) == 0 {
		close(s.full)
	}
	return s
}

// submit delivers one agent's message and blocks until the stage's replies
// are ready (or ctx ends), returning this agent's reply.
func (s *stage) submit(ctx context.Context, agent string, msg any) (any, error) {
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return nil, fmt.Errorf("%w: %s", ErrStageClosed, s.name)
	case !s.waiting[agent]:
		dup := false
		for _, a := range s.arrived {
			dup = dup || a == agent
		}
		s.mu.Unlock()
		if dup {
			return nil, fmt.Errorf("%w: %s", ErrDuplicate, s.name)
		}
		return nil, fmt.Errorf("%w: %s", ErrNotInvited, s.name)
	}
	if s.accept != nil {
		if err := s.accept(agent, msg); err != nil {
			s.mu.Unlock()
			return nil, err
		}
	}
	delete(s.waiting, agent)
	s.arrived = append(s.arrived, agent)
	if len(s.waiting) == 0 {
		close(s.full)
	}
	s.mu.Unlock()
	select {
	case <-s.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if s.err != nil {
		return nil, s.err
	}
	r, ok := s.replies[agent]
	if !ok {
		return nil, fmt.Errorf("%w: %s: dropped from the round", ErrStageClosed, s.name)
	}
	if e, isErr := r.(error); isErr {
		return nil, e
	}
	return r, nil
}

// withdraw stops waiting for an agent that said it cannot take part any
// more (its local work failed): the stage need not sit out its deadline.
// It reports whether the agent was still expected.
func (s *stage) withdraw(agent string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || !s.waiting[agent] {
		return false
	}
	delete(s.waiting, agent)
	if len(s.waiting) == 0 {
		close(s.full)
	}
	return true
}

// wait blocks until every expected agent has arrived, the deadline passes
// or ctx ends; then it closes the stage to latecomers and returns who
// arrived (in arrival order) and who did not.
func (s *stage) wait(ctx context.Context, deadline time.Time) (arrived, missing []string) {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-s.full:
	case <-t.C:
	case <-ctx.Done():
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	arrived = append([]string(nil), s.arrived...)
	missing = sortedKeys(s.waiting)
	return arrived, missing
}

// release hands each arrived agent its reply (a message or an error) and
// wakes them; agents without a reply learn they were dropped.
func (s *stage) release(replies map[string]any) {
	s.mu.Lock()
	s.closed = true
	s.replies = replies
	s.mu.Unlock()
	close(s.done)
}

// fail wakes every waiting agent with err.
func (s *stage) fail(err error) {
	s.mu.Lock()
	s.closed = true
	s.err = err
	s.mu.Unlock()
	close(s.done)
}

// record summarizes the stage for the round record.
func (s *stage) record(expected, arrived int) StageRecord {
	return StageRecord{Name: s.name, Expected: expected, Survivors: arrived, Dropped: expected - arrived, Duration: time.Since(s.opened)}
}
