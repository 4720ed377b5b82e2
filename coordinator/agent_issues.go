package coordinator

import (
	"sort"
	"strings"
	"time"

	"github.com/fedge/fedge/coordinator/api"
)

// maxIssueReason bounds a recorded reason in bytes (agents send at most
// 200; older or foreign agents may send up to the protocol's string bound).
const maxIssueReason = 512

// agentIssue is the last reason an agent gave for declining or leaving a
// round ("trainer exited 1: ValueError: …"). The leader keeps one per
// agent in memory: it is an operator's hint, not replicated state, and it
// holds nothing secure aggregation hides (that an agent dropped out of a
// round is known to the coordinator anyway; the reason is the agent's own
// words about its trainer, never its data or metrics).
type agentIssue struct {
	reason string
	at     time.Time
	round  uint64
	// owner is the job (or "rollout/ID") whose round it was.
	owner string
	// resolved is set when the agent later contributed to a committed
	// round of the same job: the job's status stops listing it, the
	// agent's record keeps it as its last error.
	resolved bool
}

// noteIssue records why agent declined or left round of owner.
func (e *Engine) noteIssue(agent, owner string, round uint64, reason string) {
	reason = strings.ToValidUTF8(strings.TrimSpace(reason), "?")
	if reason == "" {
		return
	}
	if len(reason) > maxIssueReason {
		reason = strings.ToValidUTF8(reason[:maxIssueReason], "")
	}
	e.mu.Lock()
	e.issues[agent] = agentIssue{reason: reason, at: e.cfg.Now().UTC(), round: round, owner: owner}
	e.mu.Unlock()
}

// resolveIssues marks the issues of job's agents that took part in
// committed round id without a new issue as resolved.
func (e *Engine) resolveIssues(job string, id uint64, participants []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, a := range participants {
		if is, ok := e.issues[a]; ok && is.owner == job && is.round != id {
			is.resolved = true
			e.issues[a] = is
		}
	}
}

// lastIssue returns agent's last recorded issue, if any.
func (e *Engine) lastIssue(agent string) (agentIssue, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	is, ok := e.issues[agent]
	return is, ok
}

// jobIssues lists, by agent, the unresolved issues of job's rounds.
func (e *Engine) jobIssues(job string) []api.AgentError {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []api.AgentError
	for a, is := range e.issues {
		if is.owner == job && !is.resolved {
			out = append(out, api.AgentError{Agent: a, Reason: is.reason, At: is.at, Round: is.round})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Agent < out[j].Agent })
	return out
}
