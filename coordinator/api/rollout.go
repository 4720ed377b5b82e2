package api

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/fedge/fedge/crypto/secagg"
)

// ErrBadGate is returned for a gate expression that does not parse.
var ErrBadGate = errors.New("bad gate expression")

// Gate is a parsed rollout gate such as "accuracy>=baseline-0.5": the
// candidate's metric compared with the baseline's (plus an offset) or with
// a constant. Accuracy is in percent, so offsets are percentage points;
// loss is the mean loss per example.
type Gate struct {
	Metric   string // "accuracy" or "loss"
	Op       string // ">=", "<=", ">", "<"
	Baseline bool   // compare with the baseline's metric plus Offset
	Offset   float64
}

// ParseGate parses a gate expression: METRIC OP (baseline[±N] | N).
func ParseGate(expr string) (Gate, error) {
	s := strings.ReplaceAll(strings.TrimSpace(expr), " ", "")
	var g Gate
	for _, m := range []string{"accuracy", "loss"} {
		if strings.HasPrefix(s, m) {
			g.Metric, s = m, s[len(m):]
			break
		}
	}
	if g.Metric == "" {
		return g, fmt.Errorf("%w: %q: want accuracy or loss first", ErrBadGate, expr)
	}
	for _, op := range []string{">=", "<=", ">", "<"} {
		if strings.HasPrefix(s, op) {
			g.Op, s = op, s[len(op):]
			break
		}
	}
	if g.Op == "" {
		return g, fmt.Errorf("%w: %q: want >=, <=, > or <", ErrBadGate, expr)
	}
	if strings.HasPrefix(s, "baseline") {
		g.Baseline, s = true, s[len("baseline"):]
		if s == "" {
			return g, nil
		}
		if s[0] != '+' && s[0] != '-' {
			return g, fmt.Errorf("%w: %q: want baseline+N or baseline-N", ErrBadGate, expr)
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return g, fmt.Errorf("%w: %q: %v", ErrBadGate, expr, err)
	}
	g.Offset = v
	return g, nil
}

// String writes the gate back in its canonical form.
func (g Gate) String() string {
	if !g.Baseline {
		return fmt.Sprintf("%s%s%g", g.Metric, g.Op, g.Offset)
	}
	if g.Offset == 0 {
		return g.Metric + g.Op + "baseline"
	}
	return fmt.Sprintf("%s%sbaseline%+g", g.Metric, g.Op, g.Offset)
}

// Pass reports whether the evidence passes the gate, with the two values
// compared.
func (g Gate) Pass(e Evidence) (pass bool, got, want float64) {
	cand, base := e.CandidateAccuracy, e.BaselineAccuracy
	if g.Metric == "loss" {
		cand, base = safeDiv(e.CandidateLossSum, e.CandidateTotal), safeDiv(e.BaselineLossSum, e.BaselineTotal)
	}
	want = g.Offset
	if g.Baseline {
		want += base
	}
	switch g.Op {
	case ">=":
		pass = cand >= want
	case "<=":
		pass = cand <= want
	case ">":
		pass = cand > want
	case "<":
		pass = cand < want
	}
	return pass, cand, want
}

func safeDiv(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// Cohort is one stage of a rollout: agents matching Selector, of which the
// Percent whose ID hashes below the mark (deterministic, so a host does not
// flap between cohorts).
type Cohort struct {
	Name     string            `json:"name"`
	Selector map[string]string `json:"selector,omitempty"`
	Percent  float64           `json:"percent"`
}

// Evidence is what a gate decided on: securely aggregated sums only.
type Evidence struct {
	Agents            int     `json:"agents"`
	CandidateCorrect  float64 `json:"candidate_correct"`
	CandidateTotal    float64 `json:"candidate_total"`
	CandidateLossSum  float64 `json:"candidate_loss_sum"`
	BaselineCorrect   float64 `json:"baseline_correct"`
	BaselineTotal     float64 `json:"baseline_total"`
	BaselineLossSum   float64 `json:"baseline_loss_sum"`
	CandidateAccuracy float64 `json:"candidate_accuracy"`
	BaselineAccuracy  float64 `json:"baseline_accuracy"`
}

// ParseCohorts parses "canary=5%,wide=50%,all=100%" or "5,50,100" into
// cohorts; a selector may follow in brackets: "canary[tier=canary]=100%".
func ParseCohorts(spec string) ([]Cohort, error) {
	var out []Cohort
	for i, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		c := Cohort{Name: fmt.Sprintf("stage%d", i+1)}
		if eq := strings.LastIndexByte(part, '='); eq >= 0 && !strings.Contains(part[eq:], "]") {
			c.Name, part = part[:eq], part[eq+1:]
		}
		if lb := strings.IndexByte(c.Name, '['); lb >= 0 && strings.HasSuffix(c.Name, "]") {
			sel := map[string]string{}
			for _, kv := range strings.Split(c.Name[lb+1:len(c.Name)-1], ";") {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return nil, fmt.Errorf("api.ParseCohorts: selector %q: want key=value", kv)
				}
				sel[k] = v
			}
			c.Name, c.Selector = c.Name[:lb], sel
		}
		p, err := strconv.ParseFloat(strings.TrimSuffix(part, "%"), 64)
		if err != nil || p <= 0 || p > 100 {
			return nil, fmt.Errorf("api.ParseCohorts: %q: want a percentage in (0,100]", part)
		}
		c.Percent = p
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("api.ParseCohorts: no cohorts")
	}
	return out, nil
}

// NewEvidence fills in the accuracies (percent) from aggregated sums.
func NewEvidence(agents int, cand, base EvalSums) Evidence {
	return Evidence{
		Agents:            agents,
		CandidateCorrect:  cand.Correct,
		CandidateTotal:    cand.Total,
		CandidateLossSum:  cand.LossSum,
		BaselineCorrect:   base.Correct,
		BaselineTotal:     base.Total,
		BaselineLossSum:   base.LossSum,
		CandidateAccuracy: 100 * safeDiv(cand.Correct, cand.Total),
		BaselineAccuracy:  100 * safeDiv(base.Correct, base.Total),
	}
}

// EvalSums are the securely aggregated sums of an evaluation round.
type EvalSums struct {
	Correct, Total, LossSum float64
}

// EvalMinAgents is the least number of connected agents a rollout stage
// must hold for the gate to evaluate it: secure aggregation must hide each
// host's accuracy among others.
const EvalMinAgents = secagg.MinParticipants
