package coordinator

import "github.com/fedge/fedge/coordinator/api"

// roundOwnerLabel names what a round belongs to in the rounds-in-progress
// series: its job, "rollout/ID", or its kind (an explanation round).
func roundOwnerLabel(r *RoundRecord) string {
	switch {
	case r.Job != "":
		return r.Job
	case r.Rollout != "":
		return "rollout/" + r.Rollout
	}
	return r.Kind
}

// roundsRunningByOwner counts the running rounds by roundOwnerLabel,
// with a 0 for every running job between rounds.
func (s *State) roundsRunningByOwner() map[string]int {
	out := map[string]int{}
	for _, j := range s.Jobs {
		if j.State == JobRunning {
			out[j.ID] = 0
		}
	}
	for _, r := range s.Rounds {
		if r.State == RoundRunning {
			out[roundOwnerLabel(r)]++
		}
	}
	return out
}

// roundsInProgress lists the running rounds, by ID, for status answers.
func (s *State) roundsInProgress() []api.RoundInProgress {
	var out []api.RoundInProgress
	for _, id := range sortedKeys(s.Rounds) {
		r := s.Rounds[id]
		if r.State != RoundRunning {
			continue
		}
		out = append(out, api.RoundInProgress{ID: r.ID, Job: r.Job, Rollout: r.Rollout, Kind: r.Kind, Number: r.Number, Leader: r.Leader, StartedAt: r.StartedAt})
	}
	return out
}
