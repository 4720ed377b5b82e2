package coordinator

import "sort"

// Model lines. A line is the sequence of versions of one model name
// (ModelRecord.Name: the spec's name, which a job's model names): each line
// has its own stable version and at most one unfinished rollout, and an
// agent serves the target version of every line it accepts. The default
// line is the line of State.Stable (the cluster's first model, unless an
// operator changed it); State.Stable stays its stable version, so agents
// and tools that know one model only keep working.

// LineTarget is the version an agent should serve on one model line.
type LineTarget struct {
	Line    string
	Version uint64
}

// lineOf returns the line of model version v ("" if unknown or unnamed).
func (s *State) lineOf(v uint64) string {
	if m, ok := s.Models[v]; ok {
		return m.Name
	}
	return ""
}

// DefaultLine returns the name of the default line and whether the
// cluster has one (a stable version).
func (s *State) DefaultLine() (string, bool) {
	if s.Stable == 0 {
		return "", false
	}
	return s.lineOf(s.Stable), true
}

// LineStable returns the stable version of line, 0 if it has none.
func (s *State) LineStable(line string) uint64 {
	if d, ok := s.DefaultLine(); ok && d == line {
		return s.Stable
	}
	return s.Lines[line]
}

// setStable makes v the stable version of its line (and State.Stable when
// that is the default line, or when the cluster has no stable version).
func (s *State) setStable(v uint64) {
	line := s.lineOf(v)
	if d, ok := s.DefaultLine(); !ok || d == line {
		s.Stable = v
	}
	if s.Lines == nil {
		s.Lines = map[string]uint64{}
	}
	s.Lines[line] = v
}

// lineNames lists the lines with a stable version: the default line
// first, then the others by name.
func (s *State) lineNames() []string {
	d, ok := s.DefaultLine()
	var out []string
	if ok {
		out = append(out, d)
	}
	others := make([]string, 0, len(s.Lines))
	for name, v := range s.Lines {
		if v != 0 && (!ok || name != d) {
			others = append(others, name)
		}
	}
	sort.Strings(others)
	return append(out, others...)
}

// rolloutLine is the line a rollout moves: its candidate's.
func (s *State) rolloutLine(r *RolloutRecord) string { return s.lineOf(r.Model) }

// activeRolloutOf returns line's running or paused rollout, if any.
func (s *State) activeRolloutOf(line string) *RolloutRecord {
	for _, id := range sortedKeys(s.Rollouts) {
		r := s.Rollouts[id]
		if (r.State == RolloutRunning || r.State == RolloutPaused) && s.rolloutLine(r) == line {
			return r
		}
	}
	return nil
}

// runningRollout returns the first running (not paused) rollout of any
// line, by ID, for the engine to evaluate.
func (s *State) runningRollout() *RolloutRecord {
	for _, id := range sortedKeys(s.Rollouts) {
		if r := s.Rollouts[id]; r.State == RolloutRunning {
			return r
		}
	}
	return nil
}

// lineTarget is the version agent a should serve on line: the line's
// rollout candidate if the rollout's current or an earlier cohort holds
// the agent, otherwise the line's stable version.
func (s *State) lineTarget(a *AgentRecord, line string) uint64 {
	if r := s.activeRolloutOf(line); r != nil && a != nil && !a.Revoked {
		for i := 0; i <= r.Stage && i < len(r.Cohorts); i++ {
			if inCohort(r, r.Cohorts[i], a) {
				return r.Model
			}
		}
	}
	return s.LineStable(line)
}

// TargetVersions lists, default line first, the version agentID should
// serve on every line that has a stable version.
func (s *State) TargetVersions(agentID string) []LineTarget {
	a := s.Agents[agentID]
	var out []LineTarget
	for _, line := range s.lineNames() {
		if v := s.lineTarget(a, line); v != 0 {
			out = append(out, LineTarget{Line: line, Version: v})
		}
	}
	return out
}
