package sim

import (
	"fmt"

	"github.com/fedge/fedge/protocol"
)

// onGroup returns the round as its SecAgg+ stages run: on r's session,
// or, when the plan names another coordinator for the agent's group (a
// sharded round, protocol version 6), on a session with that coordinator
// opened for the round (Hello.Round), which done closes. The agent
// package does the same (agent.groupConn).
func (a *vagent) onGroup(r *vround, plan *protocol.RoundPlan) (*vround, func(), error) {
	if plan.GroupAddr == "" {
		return r, func() {}, nil
	}
	// The fleet dials from one host: its handshakes in flight are bounded
	// as for the leader (coordinators admit a few per source address).
	select {
	case a.f.dials <- struct{}{}:
	case <-r.ctx.Done():
		return nil, nil, r.ctx.Err()
	}
	s, err := a.f.dialer(a.index).Dial(r.ctx, plan.GroupAddr, a.tls, protocol.ALPNAgent, &protocol.Config{
		Hello:          protocol.Hello{AgentID: a.id, Software: software, ModelVersion: a.version.Load(), Round: plan.RoundID},
		Handler:        handler{a},
		MaxIdleTimeout: sessionTimeout, KeepAlivePeriod: sessionTimeout / 3, HandshakeTimeout: 2 * sessionTimeout,
	})
	<-a.f.dials
	if err != nil {
		return nil, nil, fmt.Errorf("sim.onGroup: session with the group's coordinator %s at %s: %w", plan.GroupNode, plan.GroupAddr, err)
	}
	g := *r
	g.sess = s
	return &g, func() { s.Close() }, nil
}
