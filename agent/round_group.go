package agent

import (
	"context"
	"fmt"

	"github.com/fedge/fedge/protocol"
)

// groupConn returns the connection a training round's SecAgg+ stages and
// uploads go on. In a sharded round whose plan names another coordinator
// for the agent's group (RoundPlan.GroupAddr, protocol version 6) it is a
// session opened with that coordinator for the round, which done closes;
// otherwise c, the session the plan came on. The control session with
// the leader stays as it is either way.
func (a *Agent) groupConn(ctx context.Context, c conn, plan *protocol.RoundPlan) (conn, func(), error) {
	if plan.GroupAddr == "" {
		return c, func() {}, nil
	}
	s, err := a.dialSession(ctx, plan.GroupAddr, plan.RoundID)
	if err != nil {
		return nil, nil, fmt.Errorf("agent.groupConn: session with the group's coordinator %s at %s: %w", plan.GroupNode, plan.GroupAddr, err)
	}
	a.log.Debug("stages of the round go to the group's coordinator", "round", plan.RoundID, "node", plan.GroupNode, "addr", plan.GroupAddr)
	return s, func() { s.Close() }, nil
}
