package coordinator

import (
	"crypto/sha256"
	"encoding/binary"
)

// bucket places an agent at a deterministic point in [0,100) for a
// rollout, so its cohort does not change while the rollout runs.
func bucket(rolloutID, agentID string) float64 {
	h := sha256.Sum256([]byte(rolloutID + "\x00" + agentID))
	return float64(binary.BigEndian.Uint64(h[:8])%10000) / 100
}

// matches reports whether labels satisfy every key=value of a selector.
func matches(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// inCohort reports whether an agent belongs to cohort c of rollout r.
func inCohort(r *RolloutRecord, c Cohort, a *AgentRecord) bool {
	return matches(c.Selector, a.Labels) && bucket(r.ID, a.ID) < c.Percent
}

// activeRollout returns the first running or paused rollout of any line,
// if any.
func (s *State) activeRollout() *RolloutRecord {
	for _, id := range sortedKeys(s.Rollouts) {
		r := s.Rollouts[id]
		if r.State == RolloutRunning || r.State == RolloutPaused {
			return r
		}
	}
	return nil
}

// TargetVersion is the model version an agent should serve on the
// default line (lines.go): the candidate if the line's active rollout's
// current or an earlier cohort holds it, otherwise the stable version (0
// if the cluster has no model yet).
func (s *State) TargetVersion(agentID string) uint64 {
	d, ok := s.DefaultLine()
	if !ok {
		return 0
	}
	return s.lineTarget(s.Agents[agentID], d)
}

// CohortAgents lists the agents (sorted) in stage i of the active
// rollout that are not revoked.
func (s *State) CohortAgents(r *RolloutRecord, stage int) []string {
	var out []string
	if stage < 0 || stage >= len(r.Cohorts) {
		return nil
	}
	for _, id := range sortedKeys(s.Agents) {
		a := s.Agents[id]
		if !a.Revoked && inCohort(r, r.Cohorts[stage], a) {
			out = append(out, id)
		}
	}
	return out
}
