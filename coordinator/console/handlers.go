package console

import (
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/fedge/fedge/coordinator/api"
)

// The page handlers. Each reads what it shows through the api client of
// the request (the operator's), never anything else.

type clusterView struct {
	Status                      api.ClusterStatus
	Agents, Connected, Revoked  int
	JobsRunning, Jobs           int
	Rollout                     *api.Rollout // the active one, if any
	AgentsErr, JobsErr, RollErr string
}

func (s *Server) pageCluster(q *request) error {
	ctx, cancel := q.ctx()
	defer cancel()
	st, err := q.c.Cluster().Status(ctx, api.QueryOptions{})
	if err != nil {
		return err
	}
	v := clusterView{Status: st}
	if agents, err := q.c.Agents().List(ctx, api.QueryOptions{}); err != nil {
		v.AgentsErr = err.Error()
	} else {
		v.Agents = len(agents)
		for _, a := range agents {
			if a.Connected {
				v.Connected++
			}
			if a.Revoked {
				v.Revoked++
			}
		}
	}
	if jobs, err := q.c.Jobs().List(ctx, api.QueryOptions{}); err != nil {
		v.JobsErr = err.Error()
	} else {
		v.Jobs = len(jobs)
		for _, j := range jobs {
			if j.State == api.JobRunning {
				v.JobsRunning++
			}
		}
	}
	if ros, err := q.c.Rollouts().Status(ctx, api.QueryOptions{}); err != nil {
		v.RollErr = err.Error()
	} else {
		for i := range ros {
			if ros[i].State == api.RolloutRunning || ros[i].State == api.RolloutPaused {
				v.Rollout = &ros[i]
			}
		}
	}
	return s.page(q, "cluster", "Cluster "+st.Cluster, "cluster", v)
}

// agentFilter is the agents page's filter, from the query string.
type agentFilter struct {
	Q      string // substring of the ID
	Label  string // k=v[,k=v]: every pair must match
	State  string // "", connected, disconnected, revoked, error
	labels map[string]string
}

func (f agentFilter) match(a api.Agent) bool {
	if f.Q != "" && !strings.Contains(strings.ToLower(a.ID), strings.ToLower(f.Q)) {
		return false
	}
	for k, v := range f.labels {
		if a.Labels[k] != v {
			return false
		}
	}
	switch f.State {
	case "connected":
		return a.Connected
	case "disconnected":
		return !a.Connected && !a.Revoked
	case "revoked":
		return a.Revoked
	case "error":
		return a.LastError != "" || (a.Status != nil && a.Status.TrainerFailure != "")
	}
	return true
}

type agentsView struct {
	Filter         agentFilter
	Agents         []api.Agent
	Total, Shown   int
	States         []string
	LabelKeyValues []string // every k=v seen, for the filter's suggestions
}

func (s *Server) pageAgents(q *request) error {
	ctx, cancel := q.ctx()
	defer cancel()
	all, err := q.c.Agents().List(ctx, api.QueryOptions{})
	if err != nil {
		return err
	}
	qs := q.r.URL.Query()
	f := agentFilter{Q: qs.Get("q"), Label: qs.Get("label"), State: qs.Get("state"), labels: map[string]string{}}
	for _, kv := range strings.Split(f.Label, ",") {
		if k, v, ok := strings.Cut(strings.TrimSpace(kv), "="); ok && k != "" {
			f.labels[k] = v
		}
	}
	v := agentsView{Filter: f, Total: len(all), States: []string{"connected", "disconnected", "revoked", "error"}}
	seen := map[string]bool{}
	for _, a := range all {
		for k, val := range a.Labels {
			seen[k+"="+val] = true
		}
		if f.match(a) {
			v.Agents = append(v.Agents, a)
		}
	}
	v.Shown = len(v.Agents)
	for kv := range seen {
		v.LabelKeyValues = append(v.LabelKeyValues, kv)
	}
	sort.Strings(v.LabelKeyValues)
	return s.page(q, "agents", "Agents", "agents", v)
}

func (s *Server) pageAgent(q *request) error {
	ctx, cancel := q.ctx()
	defer cancel()
	a, err := q.c.Agents().Show(ctx, q.r.PathValue("id"), api.QueryOptions{})
	if err != nil {
		return err
	}
	return s.page(q, "agent", "Agent "+a.ID, "agents", a)
}

// confirmView is a confirmation page: what will happen, and the form
// that does it.
type confirmView struct {
	Question string
	Detail   string
	Action   string // the POST path
	Back     string
	Button   string
	Danger   bool
	Reason   bool // ask for a reason (rollout decisions)
	Hidden   map[string]string
}

func (s *Server) confirmRevoke(q *request) error {
	ctx, cancel := q.ctx()
	defer cancel()
	a, err := q.c.Agents().Show(ctx, q.r.PathValue("id"), api.QueryOptions{})
	if err != nil {
		return err
	}
	return s.page(q, "confirm", "Revoke "+a.ID, "agents", confirmView{
		Question: "Revoke agent " + a.ID + "?",
		Detail:   "Its certificate is revoked through Raft and its session is cut at once; it can only come back by enrolling again with a new join token.",
		Action:   "/agents/" + a.ID + "/revoke", Back: "/agents/" + a.ID, Button: "Revoke " + a.ID, Danger: true,
	})
}

func (s *Server) doRevoke(q *request) error {
	ctx, cancel := q.ctx()
	defer cancel()
	id := q.r.PathValue("id")
	if err := q.c.Agents().Revoke(ctx, id); err != nil {
		return err
	}
	return s.done(q, "/agents/"+id, "agent "+id+" revoked")
}

type jobRow struct {
	api.Job
	Percent int
}

func (s *Server) pageJobs(q *request) error {
	ctx, cancel := q.ctx()
	defer cancel()
	jobs, err := q.c.Jobs().List(ctx, api.QueryOptions{})
	if err != nil {
		return err
	}
	rows := make([]jobRow, 0, len(jobs))
	for _, j := range jobs {
		rows = append(rows, jobRow{Job: j, Percent: percent(j.RoundsDone, j.Spec.Rounds)})
	}
	slices.SortFunc(rows, func(a, b jobRow) int { return b.CreatedAt.Compare(a.CreatedAt) })
	return s.page(q, "jobs", "Jobs", "jobs", rows)
}

func percent(done, total int) int {
	if total <= 0 {
		return 0
	}
	return min(100, 100*done/total)
}

// jobView is a job's page: the job, its rounds, and charts of them.
type jobView struct {
	Job     api.Job
	Rounds  []roundRow
	Percent int
	Running bool
	// Charts: training loss, training accuracy with held-out accuracy.
	Loss, Accuracy template.HTML
	Committed      int
	BytesIn        int64
	BytesOut       int64
}

type roundRow struct {
	api.Round
	Took time.Duration
}

func (s *Server) jobView(q *request) (*jobView, error) {
	ctx, cancel := q.ctx()
	defer cancel()
	id := q.r.PathValue("id")
	j, err := q.c.Jobs().Status(ctx, id, api.QueryOptions{})
	if err != nil {
		return nil, err
	}
	rounds, err := q.c.Rounds().List(ctx, api.RoundsRequest{Job: id}, api.QueryOptions{})
	if err != nil {
		return nil, err
	}
	v := &jobView{Job: j, Percent: percent(j.RoundsDone, j.Spec.Rounds), Running: j.State == api.JobRunning}
	loss := series{Name: "training loss", Color: colorOrange}
	trainAcc := series{Name: "training accuracy", Color: colorBlue}
	heldOut := series{Name: "held-out accuracy", Color: colorGreen}
	heldLoss := series{Name: "held-out loss", Color: colorRed}
	for _, r := range rounds {
		row := roundRow{Round: r}
		if !r.EndedAt.IsZero() {
			row.Took = r.EndedAt.Sub(r.StartedAt)
		}
		v.Rounds = append(v.Rounds, row)
		v.BytesIn += r.BytesIn
		v.BytesOut += r.BytesOut
		if r.State != api.RoundCommitted {
			continue
		}
		x := float64(r.Number)
		switch r.Kind {
		case api.RoundTrain:
			v.Committed++
			if m, ok := r.Metrics["train_loss"]; ok {
				loss.Points = append(loss.Points, point{x, m})
			}
			if m, ok := r.Metrics["train_accuracy"]; ok {
				trainAcc.Points = append(trainAcc.Points, point{x, m})
			}
		case api.RoundEval:
			if m, ok := r.Metrics["eval_accuracy"]; ok {
				heldOut.Points = append(heldOut.Points, point{x, m})
			}
			if m, ok := r.Metrics["eval_loss"]; ok {
				heldLoss.Points = append(heldLoss.Points, point{x, m})
			}
		}
	}
	slices.Reverse(v.Rounds) // newest first
	lossSeries := []series{loss}
	if len(heldLoss.Points) > 0 {
		lossSeries = append(lossSeries, heldLoss)
	}
	v.Loss = lineChart("chart-loss", "Loss per round", lossSeries)
	v.Accuracy = lineChart("chart-accuracy", "Accuracy per round", []series{trainAcc, heldOut})
	return v, nil
}

func (s *Server) pageJob(q *request) error {
	v, err := s.jobView(q)
	if err != nil {
		return err
	}
	return s.page(q, "job", "Job "+v.Job.ID, "jobs", v)
}

func (s *Server) fragJobLive(q *request) error {
	v, err := s.jobView(q)
	if err != nil {
		return err
	}
	return s.fragment(q, "job", v)
}

func (s *Server) confirmJobStop(q *request) error {
	ctx, cancel := q.ctx()
	defer cancel()
	j, err := q.c.Jobs().Status(ctx, q.r.PathValue("id"), api.QueryOptions{})
	if err != nil {
		return err
	}
	return s.page(q, "confirm", "Stop "+j.ID, "jobs", confirmView{
		Question: "Stop job " + j.ID + "?",
		Detail:   fmt.Sprintf("It has committed %d of %d rounds; the round in flight is abandoned and the job cannot be resumed. Its committed models stay in the registry.", j.RoundsDone, j.Spec.Rounds),
		Action:   "/jobs/" + j.ID + "/stop", Back: "/jobs/" + j.ID, Button: "Stop " + j.ID, Danger: true,
	})
}

func (s *Server) doJobStop(q *request) error {
	ctx, cancel := q.ctx()
	defer cancel()
	id := q.r.PathValue("id")
	if err := q.c.Jobs().Stop(ctx, id); err != nil {
		return err
	}
	return s.done(q, "/jobs/"+id, "job "+id+" stopped")
}

// jobNewView is the start-a-job form, then its confirmation.
type jobNewView struct {
	Spec       string // as typed
	Normalized string // with defaults filled in (the confirmation)
	Error      string
}

const exampleSpec = `{
  "name": "mnist-2nn",
  "model": "2nn",
  "data": {"kind": "mnist"},
  "rounds": 20,
  "fraction": 0.5,
  "min_clients": 3,
  "plan": {"epochs": 1, "batch_size": 10, "lr": 0.1},
  "secagg": {"enabled": true},
  "eval_every": 5
}`

func (s *Server) pageJobNew(q *request) error {
	return s.page(q, "jobnew", "Start a job", "jobs", jobNewView{Spec: exampleSpec})
}

// doJobStart shows the spec with its defaults for confirmation, and
// starts the job once confirmed.
func (s *Server) doJobStart(q *request) error {
	text := q.r.PostFormValue("spec")
	var spec api.JobSpec
	dec := json.NewDecoder(strings.NewReader(text))
	dec.DisallowUnknownFields()
	v := jobNewView{Spec: text}
	if err := dec.Decode(&spec); err != nil {
		v.Error = "the spec is not a job spec: " + err.Error()
		q.w.WriteHeader(http.StatusBadRequest)
		return s.page(q, "jobnew", "Start a job", "jobs", v)
	}
	norm := spec
	if err := norm.Normalize(); err != nil {
		v.Error = err.Error()
		q.w.WriteHeader(http.StatusBadRequest)
		return s.page(q, "jobnew", "Start a job", "jobs", v)
	}
	if q.r.PostFormValue("confirm") != "yes" {
		b, _ := json.MarshalIndent(norm, "", "  ")
		v.Normalized = string(b)
		return s.page(q, "jobnew", "Start a job", "jobs", v)
	}
	ctx, cancel := q.ctx()
	defer cancel()
	j, err := q.c.Jobs().Start(ctx, spec)
	if err != nil {
		code, msg := errorStatus(err)
		if code != http.StatusBadRequest {
			return err
		}
		v.Error = msg
		q.w.WriteHeader(code)
		return s.page(q, "jobnew", "Start a job", "jobs", v)
	}
	return s.done(q, "/jobs/"+j.ID, "job "+j.ID+" started")
}

type roundView struct {
	Round  api.Round
	Stages template.HTML
	Took   time.Duration
}

func (s *Server) pageRound(q *request) error {
	ctx, cancel := q.ctx()
	defer cancel()
	id, err := parseUint(q.r.PathValue("id"))
	if err != nil {
		return err
	}
	r, err := q.c.Rounds().Show(ctx, id, api.QueryOptions{})
	if err != nil {
		return err
	}
	v := roundView{Round: r}
	if !r.EndedAt.IsZero() {
		v.Took = r.EndedAt.Sub(r.StartedAt)
	}
	var rows []bar
	for _, st := range r.Stages {
		rows = append(rows, bar{Label: st.Name, Seconds: st.Duration.Seconds(), Expected: st.Expected, Survived: st.Survivors})
	}
	if len(rows) > 0 {
		v.Stages = stageChart(rows)
	}
	return s.page(q, "round", fmt.Sprintf("Round %d", r.ID), "jobs", v)
}

type modelsView struct {
	Models []api.Model
	Stable uint64
}

func (s *Server) pageModels(q *request) error {
	ctx, cancel := q.ctx()
	defer cancel()
	ms, err := q.c.Models().List(ctx, api.QueryOptions{})
	if err != nil {
		return err
	}
	st, err := q.c.Cluster().Status(ctx, api.QueryOptions{})
	if err != nil {
		return err
	}
	slices.Reverse(ms)
	return s.page(q, "models", "Models", "models", modelsView{Models: ms, Stable: st.Stable})
}

// modelView is one version with its lineage: its ancestors (parent
// first) and the versions made from it.
type modelView struct {
	Model     api.Model
	Ancestors []api.Model
	Children  []api.Model
	Stable    bool
}

func (s *Server) pageModel(q *request) error {
	ctx, cancel := q.ctx()
	defer cancel()
	v, err := parseUint(q.r.PathValue("version"))
	if err != nil {
		return err
	}
	ms, err := q.c.Models().List(ctx, api.QueryOptions{})
	if err != nil {
		return err
	}
	st, err := q.c.Cluster().Status(ctx, api.QueryOptions{})
	if err != nil {
		return err
	}
	byV := map[uint64]api.Model{}
	for _, m := range ms {
		byV[m.Version] = m
	}
	m, ok := byV[v]
	if !ok {
		return &httpError{code: http.StatusNotFound, msg: fmt.Sprintf("model %d is not in the registry", v)}
	}
	mv := modelView{Model: m, Stable: st.Stable == v}
	for p, seen := m.Parent, 0; p != 0 && seen < len(ms); seen++ {
		a, ok := byV[p]
		if !ok {
			break
		}
		mv.Ancestors = append(mv.Ancestors, a)
		p = a.Parent
	}
	for _, c := range ms {
		if c.Parent == v && c.Version != v {
			mv.Children = append(mv.Children, c)
		}
	}
	return s.page(q, "model", fmt.Sprintf("Model %d", v), "models", mv)
}

// exportModel downloads a committed version's model file from this
// coordinator's replica.
func (s *Server) exportModel(q *request) error {
	ctx, cancel := q.ctx()
	defer cancel()
	v, err := parseUint(q.r.PathValue("version"))
	if err != nil {
		return err
	}
	b, err := s.be.Model(ctx, v)
	if err != nil {
		return err
	}
	q.w.Header().Set("Content-Type", "application/octet-stream")
	q.w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="fedge-model-%d.bin"`, v))
	q.w.Header().Set("Content-Length", fmt.Sprint(len(b)))
	_, err = q.w.Write(b)
	return err
}

func (s *Server) pageRollouts(q *request) error {
	ctx, cancel := q.ctx()
	defer cancel()
	ros, err := q.c.Rollouts().Status(ctx, api.QueryOptions{})
	if err != nil {
		return err
	}
	slices.Reverse(ros)
	return s.page(q, "rollouts", "Rollouts", "rollouts", ros)
}

// rolloutView is one rollout with its stages and decisions.
type rolloutView struct {
	R         api.Rollout
	Stages    []stageRow
	Decisions []decisionRow
	Actions   []string // what an operator can do now
	Finished  bool
}

type stageRow struct {
	Index  int
	Cohort api.Cohort
	Name   string
	State  string // done, current, pending, rolled back
}

type decisionRow struct {
	api.Decision
	StageName string
	// Gate's verdict on the evidence, when there is evidence.
	Pass      bool
	Got, Want float64
	HasGate   bool
	CandLoss  float64
	BaseLoss  float64
}

func (s *Server) rolloutView(q *request) (*rolloutView, error) {
	ctx, cancel := q.ctx()
	defer cancel()
	ros, err := q.c.Rollouts().Status(ctx, api.QueryOptions{})
	if err != nil {
		return nil, err
	}
	id := q.r.PathValue("id")
	var r *api.Rollout
	for i := range ros {
		if ros[i].ID == id {
			r = &ros[i]
		}
	}
	if r == nil {
		return nil, &httpError{code: http.StatusNotFound, msg: "no rollout " + id}
	}
	v := &rolloutView{R: *r, Finished: r.State == api.RolloutPromoted || r.State == api.RolloutRolledBack}
	for i, c := range r.Cohorts {
		st := "pending"
		switch {
		case r.State == api.RolloutPromoted || i < r.Stage:
			st = "done"
		case r.State == api.RolloutRolledBack && i == r.Stage:
			st = "rolled back"
		case i == r.Stage:
			st = "current"
		}
		v.Stages = append(v.Stages, stageRow{Index: i, Cohort: c, Name: r.StageName(i), State: st})
	}
	g, gerr := api.ParseGate(r.Gate)
	for _, d := range r.Decisions {
		row := decisionRow{Decision: d, StageName: r.StageName(d.Stage)}
		if e := d.Evidence; e != nil {
			row.CandLoss = safeDiv(e.CandidateLossSum, e.CandidateTotal)
			row.BaseLoss = safeDiv(e.BaselineLossSum, e.BaselineTotal)
			if gerr == nil {
				row.HasGate = true
				row.Pass, row.Got, row.Want = g.Pass(*e)
			}
		}
		v.Decisions = append(v.Decisions, row)
	}
	switch r.State {
	case api.RolloutRunning:
		v.Actions = []string{api.ActionPause, api.ActionPromote, api.ActionRollback}
	case api.RolloutPaused:
		v.Actions = []string{api.ActionResume, api.ActionPromote, api.ActionRollback}
	}
	return v, nil
}

func safeDiv(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func (s *Server) pageRollout(q *request) error {
	v, err := s.rolloutView(q)
	if err != nil {
		return err
	}
	return s.page(q, "rollout", "Rollout "+v.R.ID, "rollouts", v)
}

func (s *Server) fragRolloutLive(q *request) error {
	v, err := s.rolloutView(q)
	if err != nil {
		return err
	}
	return s.fragment(q, "rollout", v)
}

// rolloutActions says what each action does, for its confirmation.
var rolloutActions = map[string]string{
	api.ActionPause:    "The rollout stops advancing: no evaluation round starts and no cohort changes until it is resumed.",
	api.ActionResume:   "The rollout goes on from its current stage.",
	api.ActionPromote:  "The candidate becomes the stable model: every agent outside a rollout is told to serve it.",
	api.ActionRollback: "The baseline becomes the stable model again: every agent, the canaries included, is told to serve it. The rollout ends.",
}

func (s *Server) confirmRollout(q *request) error {
	v, err := s.rolloutView(q)
	if err != nil {
		return err
	}
	action := q.r.PathValue("action")
	if !slices.Contains(v.Actions, action) {
		return &httpError{code: http.StatusNotFound, msg: fmt.Sprintf("rollout %s is %s: %q is not an action it takes now", v.R.ID, v.R.State, action)}
	}
	return s.page(q, "confirm", action+" "+v.R.ID, "rollouts", confirmView{
		Question: fmt.Sprintf("%s rollout %s of model %d?", capitalize(action), v.R.ID, v.R.Model),
		Detail:   fmt.Sprintf("It is %s at %s. %s", v.R.State, v.R.StageName(v.R.Stage), rolloutActions[action]),
		Action:   "/rollouts/" + v.R.ID + "/" + action, Back: "/rollouts/" + v.R.ID,
		Button: capitalize(action) + " " + v.R.ID, Danger: action != api.ActionResume, Reason: true,
	})
}

func (s *Server) doRollout(q *request) error {
	id, action := q.r.PathValue("id"), q.r.PathValue("action")
	if _, ok := rolloutActions[action]; !ok {
		return &httpError{code: http.StatusNotFound, msg: "no such rollout action " + action}
	}
	ctx, cancel := q.ctx()
	defer cancel()
	reason := strings.TrimSpace(q.r.PostFormValue("reason"))
	if len(reason) > 500 {
		reason = reason[:500]
	}
	if err := q.c.Rollouts().Act(ctx, api.RolloutActionRequest{ID: id, Action: action, Reason: reason}); err != nil {
		return err
	}
	return s.done(q, "/rollouts/"+id, "rollout "+id+": "+action+" committed")
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func (s *Server) pageAudit(q *request) error {
	ctx, cancel := q.ctx()
	defer cancel()
	recs, err := q.c.Admins().Audit(ctx, api.AuditRequest{Limit: 500}, api.QueryOptions{})
	if err != nil {
		return err
	}
	slices.Reverse(recs)
	return s.page(q, "audit", "Audit trail", "audit", recs)
}
