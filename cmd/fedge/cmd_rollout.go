package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/fedge/fedge/coordinator/api"
)

func rolloutCommands() []command {
	return []command{
		{"start", "start rolling a model version out", runRolloutStart},
		{"status", "show rollouts, their stage and every decision", runRolloutStatus},
		{"pause", "pause the active rollout", rolloutAction("pause")},
		{"resume", "resume a paused rollout", rolloutAction("resume")},
		{"promote", "promote the candidate to the whole fleet now", rolloutAction("promote")},
		{"rollback", "return every agent to the previous model", rolloutAction("rollback")},
	}
}

var rolloutStartSpec = cmdSpec{
	path: "rollout start",
	help: `Roll a committed model version out to the fleet through cohorts. The first
cohort (the canary) evaluates the candidate and the current stable model on
its local held-out data; the cluster sees only securely aggregated sums, and
the gate compares the two to advance to the next cohort or roll back, with no
operator action. The stages are a canary, then all=100%: when agents
labelled tier=canary exist, the canary is those agents (-canary P takes P%
of them; default all of them), else P% of the fleet (default 5%). -stages
lists them explicitly instead (name=percent, a selector in brackets:
"canary[tier=canary]=100%,all=100%"). Assignment is by agent ID, so a host
does not flap between cohorts. A canary needs at least 3 connected agents
(secure aggregation must hide each host's accuracy among others): a canary
smaller than that is refused at once with the flag that fixes it, unless
-force. The gate is METRIC OP (baseline[+-N] | N) with metric accuracy
(percent) or loss. Stages are shown by name and position ("canary (1/2)").
-quantize int8 rolls the version out quantized: the cluster registers a new
version with its weights rounded to int8 (stored at about a quarter of the
float size) and the int8 serving directive, each agent
calibrates it on its held-out data and serves it in int8 on the same
/v1/predict, and the gate compares the int8 candidate with the float
baseline on the canaries before it spreads. -calibration PATH makes the
agents calibrate on a file of their own instead (little-endian float32
rows in the model's input layout; relative to the agent's data_dir).`,
	example: `fedge rollout start -model v7 -canary 5% -gate 'accuracy>=baseline-0.5'
fedge rollout start -model 7 -stages 'canary=5%,half=50%,all=100%' -gate 'loss<=baseline+0.02'
fedge rollout start -model 7 -quantize int8 -gate 'accuracy>=baseline-0.5'
fedge rollout start -model 7 -quantize int8 -calibration calib/digits.f32 -gate 'accuracy>=baseline-0.5'`,
}

func runRolloutStart(args []string, stdout, stderr io.Writer) int {
	c := newCLI(stdout, stderr, rolloutStartSpec, true)
	model := c.fs.String("model", "", "model version to roll out (3 or v3)")
	canary := c.fs.String("canary", "", "canary percentage; stages become canary=P,all=100% (default 5%)")
	stages := c.fs.String("stages", "", "explicit stages: name=P%,... (instead of -canary)")
	gate := c.fs.String("gate", "", "promotion gate, e.g. 'accuracy>=baseline-0.5'")
	force := c.fs.Bool("force", false, "start even if the canary holds fewer agents than an evaluation needs")
	quantize := c.fs.String("quantize", "", "serve the model quantized: int8 (default: as committed, float32)")
	calibration := c.fs.String("calibration", "", "with -quantize: what agents calibrate on, held-out (default) or the path of a float32 rows file on each agent")
	if _, code, ok := c.parse(args, 0, 0); !ok {
		return code
	}
	if *model == "" {
		return c.usageFail(usagef("-model is required"))
	}
	v, err := parseVersion(*model)
	if err != nil {
		return c.usageFail(err)
	}
	if *gate == "" {
		return c.usageFail(usagef("-gate is required, e.g. -gate 'accuracy>=baseline-0.5'"))
	}
	g, err := api.ParseGate(*gate)
	if err != nil {
		return c.usageFail(err)
	}
	if _, err := rolloutCohorts(*canary, *stages, nil); err != nil {
		return c.usageFail(err)
	}
	if *quantize != "" && *quantize != "int8" {
		return c.usageFail(usagef("-quantize %q: the one quantized serving mode is int8", *quantize))
	}
	if *calibration != "" && *quantize == "" {
		return c.usageFail(usagef("-calibration is for a quantized rollout: add -quantize int8"))
	}
	return do(c, func(ctx context.Context, cl *api.Client, q api.QueryOptions) (api.Rollout, error) {
		agents, err := cl.Agents().List(ctx, q)
		if err != nil {
			return api.Rollout{}, err
		}
		cohorts, err := rolloutCohorts(*canary, *stages, agents)
		if err != nil {
			return api.Rollout{}, err
		}
		if err := canaryLargeEnough(cohorts, agents, *canary); err != nil && !*force {
			return api.Rollout{}, err
		}
		return cl.Rollouts().Start(ctx, api.RolloutRequest{Model: v, Cohorts: cohorts, Gate: g.String(), Quantize: *quantize, Calibration: *calibration})
	}, func(w io.Writer, r api.Rollout) error {
		what := version(r.Model)
		if r.Quantize != "" {
			what = fmt.Sprintf("%s (%s of %s)", version(r.Model), r.Quantize, version(v))
		}
		_, err := fmt.Fprintf(w, "Started rollout %s of %s over %s (baseline %s), gate %s.\nFollow it with: fedge rollout status\n",
			r.ID, what, cohortsString(r.Cohorts, -1), version(r.Baseline), r.Gate)
		return err
	})
}

// canaryLabel is the label that marks canary hosts by default.
const canaryLabel, canaryValue = "tier", "canary"

// rolloutCohorts builds the stages from -canary or -stages: always a
// canary stage before all=100%. When some agents are labelled tier=canary
// the canary is those agents (-canary P: P% of them), else P% of the
// fleet (default 5%).
func rolloutCohorts(canary, stages string, agents []api.Agent) ([]api.Cohort, error) {
	if canary != "" && stages != "" {
		return nil, usagef("give -canary or -stages, not both")
	}
	if stages != "" {
		return api.ParseCohorts(stages)
	}
	labelled := 0
	for _, a := range agents {
		if a.Labels[canaryLabel] == canaryValue && !a.Revoked {
			labelled++
		}
	}
	name := "canary"
	if labelled > 0 {
		name = "canary[" + canaryLabel + "=" + canaryValue + "]"
	}
	if canary == "" {
		canary = "5%"
		if labelled > 0 {
			canary = "100%"
		}
	}
	p := strings.TrimSuffix(strings.TrimSpace(canary), "%")
	cs, err := api.ParseCohorts(name + "=" + p + "%,all=100%")
	if err != nil {
		return nil, usagef("-canary %q: want a percentage in (0,100]", canary)
	}
	return cs, nil
}

// canaryLargeEnough refuses a first stage that would hold fewer connected
// agents than an evaluation round needs (api.EvalMinAgents): it would wait
// forever. The count is the expectation over the agents' hash buckets.
func canaryLargeEnough(cs []api.Cohort, agents []api.Agent, canaryFlag string) error {
	if len(cs) == 0 {
		return nil
	}
	first := cs[0]
	matching := 0
	for _, a := range agents {
		if a.Connected && !a.Revoked && selects(first.Selector, a.Labels) {
			matching++
		}
	}
	expected := float64(matching) * first.Percent / 100
	if expected >= api.EvalMinAgents {
		return nil
	}
	hint := fmt.Sprintf("-canary %.0f%%", min(100, 100*float64(api.EvalMinAgents)/float64(max(matching, 1))+0.5))
	if matching < api.EvalMinAgents {
		hint = fmt.Sprintf("label at least %d connected hosts %s=%s (fedge agents label ID %s=%s), or start with -force and promote by hand", api.EvalMinAgents, canaryLabel, canaryValue, canaryLabel, canaryValue)
	}
	return inputf("the first stage %q would hold about %.1f of the %d connected agents it selects, and a canary needs at least %d (secure aggregation must hide each host's accuracy); use %s",
		first.Name, expected, matching, api.EvalMinAgents, hint)
}

// selects reports whether an agent's labels match a cohort's selector.
func selects(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// cohortsString writes the stages, marking the current one (if cur >= 0).
func cohortsString(cs []api.Cohort, cur int) string {
	parts := make([]string, len(cs))
	for i, co := range cs {
		s := fmt.Sprintf("%s=%g%%", co.Name, co.Percent)
		if len(co.Selector) > 0 {
			s = fmt.Sprintf("%s[%s]=%g%%", co.Name, strings.ReplaceAll(labelString(co.Selector), ",", ";"), co.Percent)
		}
		if i == cur {
			s = "[" + s + "]"
		}
		parts[i] = s
	}
	return strings.Join(parts, " -> ")
}

var rolloutStatusSpec = cmdSpec{
	path: "rollout status",
	help: `List the rollouts, then show the latest in detail: its stages with the
current one in brackets, and every Raft-committed decision (by the gate or by
an operator) with its evidence, the securely aggregated accuracy of the
candidate and of the baseline over the canary cohort.`,
	example: "fedge rollout status",
}

func runRolloutStatus(args []string, stdout, stderr io.Writer) int {
	c := newCLI(stdout, stderr, rolloutStatusSpec, true)
	if _, code, ok := c.parse(args, 0, 0); !ok {
		return code
	}
	return do(c, func(ctx context.Context, cl *api.Client, q api.QueryOptions) ([]api.Rollout, error) {
		return cl.Rollouts().Status(ctx, q)
	}, func(w io.Writer, ros []api.Rollout) error {
		if len(ros) == 0 {
			_, err := fmt.Fprintln(w, "No rollouts. Start one with `fedge rollout start -model V -gate 'accuracy>=baseline-0.5'`.")
			return err
		}
		t := newTable(w, "ID", "MODEL", "BASELINE", "STATE", "STAGE", "GATE", "CREATED")
		for _, r := range ros {
			t.row(r.ID, version(r.Model), version(r.Baseline), r.State, stageName(r), r.Gate, when(r.CreatedAt))
		}
		if err := t.flush(); err != nil {
			return err
		}
		r := ros[len(ros)-1]
		fmt.Fprintf(w, "\nRollout %s (%s):\n", r.ID, r.State)
		if r.Waiting != "" {
			fmt.Fprintf(w, "Waiting: %s\n", r.Waiting)
		}
		candidate := version(r.Model)
		if r.Quantize != "" {
			candidate += " (" + r.Quantize + ")"
		}
		if r.Line != "" {
			candidate += ", model " + r.Line
		}
		if err := kv(w,
			"Candidate", candidate,
			"Baseline", version(r.Baseline),
			"Stages", cohortsString(r.Cohorts, r.Stage),
			"Gate", r.Gate,
			"Updated", when(r.UpdatedAt),
		); err != nil {
			return err
		}
		if len(r.Decisions) == 0 {
			return nil
		}
		fmt.Fprintln(w, "\nDecisions:")
		dt := newTable(w, "AT", "STAGE", "ACTION", "BY", "AGENTS", "CANDIDATE ACC", "BASELINE ACC", "REASON")
		for _, d := range r.Decisions {
			agents, cand, base := "-", "-", "-"
			if e := d.Evidence; e != nil {
				agents = fmt.Sprint(e.Agents)
				cand = fmt.Sprintf("%.2f%%", e.CandidateAccuracy)
				base = fmt.Sprintf("%.2f%%", e.BaselineAccuracy)
			}
			dt.row(when(d.At), r.StageName(d.Stage), d.Action, d.By, agents, cand, base, dash(d.Reason))
		}
		return dt.flush()
	})
}

// stageName is the rollout's current cohort as "name (i/n)".
func stageName(r api.Rollout) string { return r.StageName(r.Stage) }

var rolloutActionHelp = map[string]string{
	"pause":    "Pause a rollout: it stays at its current stage and the gate takes no decision until it is resumed.",
	"resume":   "Resume a paused rollout: the gate evaluates again and the rollout advances or rolls back.",
	"promote":  "Promote the candidate now, overriding the gate: it becomes the stable model every agent serves.",
	"rollback": "Roll the rollout back: every agent returns to the baseline model, and the candidate is not served again by this rollout.",
}

// rolloutAction returns the command of an operator decision.
func rolloutAction(action string) func(args []string, stdout, stderr io.Writer) int {
	return func(args []string, stdout, stderr io.Writer) int {
		spec := cmdSpec{
			path:    "rollout " + action,
			help:    rolloutActionHelp[action] + " The decision is Raft-committed with the operator's name and reason. Without -id it applies to the active rollout (each model line has its own; name one with -id when several are active).",
			example: fmt.Sprintf("fedge rollout %s -reason 'canary hosts report latency'", action),
		}
		c := newCLI(stdout, stderr, spec, true)
		id := c.fs.String("id", "", "rollout ID (default: the active rollout)")
		reason := c.fs.String("reason", "", "why, recorded with the decision")
		if _, code, ok := c.parse(args, 0, 0); !ok {
			return code
		}
		req := api.RolloutActionRequest{ID: *id, Action: action, Reason: *reason}
		return do(c, func(ctx context.Context, cl *api.Client, q api.QueryOptions) (struct{}, error) {
			return noAnswer(cl.Rollouts().Act(ctx, req))
		}, func(w io.Writer, _ struct{}) error {
			which := "the active rollout"
			if *id != "" {
				which = "rollout " + *id
			}
			_, err := fmt.Fprintf(w, "Recorded %s of %s.\n", action, which)
			return err
		})
	}
}
