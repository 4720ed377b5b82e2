package stagedriver

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/fedge/fedge/protocol"
)

// Round routes a round's agent messages to its open stage. It remembers
// the agents that left the round, so no stage opened later waits for
// them. The zero value is a round with no open stage; a Round must not be
// copied after first use.
type Round struct {
	mu        sync.Mutex
	stage     *Barrier
	stageType protocol.MsgType
	gone      map[string]bool
}

// Open starts a stage that accepts messages of type t from agents (less
// those that left the round) and makes it the one Deliver routes to.
// accept is as for NewBarrier.
func (r *Round) Open(name string, t protocol.MsgType, agents []string, accept func(agent string, m protocol.Message) error) *Barrier {
	st := NewBarrier(name, agents, func(agent string, msg any) error {
		if accept == nil {
			return nil
		}
		return accept(agent, msg.(protocol.Message))
	})
	r.mu.Lock()
	r.stage, r.stageType = st, t
	for a := range r.gone {
		st.Withdraw(a)
	}
	r.mu.Unlock()
	return st
}

// Withdraw removes an agent from the round: from the open stage's
// expected set and from every stage opened later. It reports whether the
// open stage was still waiting for the agent.
func (r *Round) Withdraw(agent string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.gone == nil {
		r.gone = map[string]bool{}
	}
	r.gone[agent] = true
	return r.stage != nil && r.stage.Withdraw(agent)
}

// Close ends the round for any agent still blocked in a stage: they get
// err, unless the stage already released them.
func (r *Round) Close(err error) {
	r.mu.Lock()
	st := r.stage
	r.stage = nil
	r.mu.Unlock()
	if st != nil {
		st.Fail(err)
	}
}

// Deliver hands an agent's message to the open stage and returns its
// reply. count, if not nil, is called with the message (reply false) once
// a stage of its type takes it, and with the reply (reply true): the
// round's byte counters.
func (r *Round) Deliver(ctx context.Context, agent string, m protocol.Message, count func(m protocol.Message, reply bool)) (protocol.Message, error) {
	r.mu.Lock()
	st, t := r.stage, r.stageType
	r.mu.Unlock()
	if st == nil || m.Type() != t {
		return nil, fmt.Errorf("%w: the round does not expect %s now", ErrStageClosed, m.Type())
	}
	if count != nil {
		count(m, false)
	}
	reply, err := st.Submit(ctx, agent, m)
	if err != nil {
		return nil, err
	}
	out, _ := reply.(protocol.Message)
	if out != nil && count != nil {
		count(out, true)
	}
	return out, nil
}

// WireError maps an error of a stage to the protocol error an agent
// receives: a closed stage is CodeRoundClosed, an agent the stage does not
// wait for CodeUnauthorized, an expired deadline CodeTimeout, anything
// else (a message the server rejected) CodeBadRequest. A *protocol.Error
// passes unchanged.
func WireError(err error) error {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		return err
	}
	code := protocol.CodeBadRequest
	switch {
	case errors.Is(err, ErrStageClosed):
		code = protocol.CodeRoundClosed
	case errors.Is(err, ErrNotInvited):
		code = protocol.CodeUnauthorized
	case errors.Is(err, context.DeadlineExceeded):
		code = protocol.CodeTimeout
	}
	return &protocol.Error{Code: code, Message: err.Error()}
}
