package stagedriver

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"
)

// Stage errors an agent can receive.
var (
	ErrStageClosed = errors.New("stagedriver: stage closed (deadline passed or round ended)")
	ErrNotInvited  = errors.New("stagedriver: not a participant of this stage")
	ErrDuplicate   = errors.New("stagedriver: message already received for this stage")
)

// Barrier is one stage of a round: it opens for the agents still in the
// round, each agent submits one message (Submit blocks), and when all have
// arrived or the deadline passes the server computes a reply for each and
// releases them. Messages are handed to accept as they arrive, so a stage
// that aggregates (masked inputs) never holds every message at once.
type Barrier struct {
	name     string
	mu       sync.Mutex
	waiting  map[string]bool // expected and not yet arrived
	arrived  []string        // in arrival order
	closed   bool
	released bool
	full     chan struct{} // closed when every expected agent has arrived
	done     chan struct{} // closed when replies are ready
	replies  map[string]any
	err      error // for everyone, if the stage failed
	accept   func(agent string, msg any) error
	opened   time.Time
}

// StageReport summarizes a stage for the round's record.
type StageReport struct {
	Name     string
	Expected int // agents the stage waited for
	Arrived  int // agents whose message it accepted
	Took     time.Duration
}

// NewBarrier opens a stage for the given agents. accept, if not nil, is
// called under the stage's lock for each message as it arrives; an error
// rejects that message (the agent gets it at once and stays expected).
func NewBarrier(name string, agents []string, accept func(agent string, msg any) error) *Barrier {
	s := &Barrier{
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

// Name is the stage's name.
func (s *Barrier) Name() string { return s.name }

// Submit delivers one agent's message and blocks until the stage's replies
// are ready (or ctx ends), returning this agent's reply. A reply that is
// an error is returned as the error.
func (s *Barrier) Submit(ctx context.Context, agent string, msg any) (any, error) {
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return nil, fmt.Errorf("%w: %s", ErrStageClosed, s.name)
	case !s.waiting[agent]:
		dup := slices.Contains(s.arrived, agent)
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

// Withdraw stops waiting for an agent that said it cannot take part any
// more (its local work failed, its session ended): the stage need not sit
// out its deadline. It reports whether the agent was still expected.
func (s *Barrier) Withdraw(agent string) bool {
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

// Wait blocks until every expected agent has arrived, the deadline passes
// or ctx ends; then it closes the stage to latecomers and returns who
// arrived (in arrival order) and who did not (sorted).
func (s *Barrier) Wait(ctx context.Context, deadline time.Time) (arrived, missing []string) {
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
	missing = slices.Sorted(maps.Keys(s.waiting))
	return arrived, missing
}

// Release hands each arrived agent its reply (a message or an error) and
// wakes them; agents without a reply learn they were dropped. Only the
// first Release or Fail of a stage counts.
func (s *Barrier) Release(replies map[string]any) {
	s.end(replies, nil)
}

// Fail wakes every waiting agent with err.
func (s *Barrier) Fail(err error) {
	s.end(nil, err)
}

func (s *Barrier) end(replies map[string]any, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.released {
		return
	}
	s.released = true
	if replies != nil {
		s.replies = replies
	}
	s.err = err
	close(s.done)
}

// Report summarizes the stage: expected agents, how many arrived, and the
// time since it opened.
func (s *Barrier) Report(expected, arrived int) StageReport {
	return StageReport{Name: s.name, Expected: expected, Arrived: arrived, Took: time.Since(s.opened)}
}
