package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/internal/mnist"
	"github.com/fedge/fedge/internal/wait"
	"github.com/fedge/fedge/tensor"
	"github.com/fedge/fedge/tensor/data"
)

// Options configure a demo run. Zero values mean the defaults.
type Options struct {
	// Binary is the fedge executable to start coordinators and agents
	// with; default the running executable.
	Binary string
	// Dir holds the cluster's files; default a new temporary folder,
	// removed at the end unless Keep.
	Dir  string
	Keep bool
	// MNIST is the folder of the MNIST IDX files.
	MNIST string
	// Agents is the fleet size (default 20); Rounds the most training
	// rounds (default 100); Target the test accuracy to reach (0.95).
	Agents int
	Rounds int
	Target float64
	// Out is where accuracy.png and rounds.json go (default demo-out,
	// which git ignores; docs/demo holds the committed run).
	Out string
	// Partition of MNIST across agents: "pathological" (default; the
	// FedAvg paper's 2 label-sorted shards per agent), "dirichlet" or "iid".
	Partition string
	// EvalEvery, if positive, makes the job ask for a federated evaluation
	// on the agents' held-out splits every EvalEvery rounds (eval_every);
	// the plot then shows that held-out accuracy beside the test accuracy.
	EvalEvery int
}

// RoundLine is one training round as the demo reports it.
type RoundLine struct {
	Round        int     `json:"round"`
	ID           uint64  `json:"id"`
	Model        uint64  `json:"model"`
	Participants int     `json:"participants"`
	Survivors    int     `json:"survivors"`
	Dropouts     int     `json:"dropouts"`
	BytesIn      int64   `json:"bytes_in"`
	BytesOut     int64   `json:"bytes_out"`
	Seconds      float64 `json:"seconds"`
	TrainLoss    float64 `json:"train_loss"`
	Accuracy     float64 `json:"test_accuracy"`
}

// EvalLine is one federated evaluation of the job's model on the agents'
// held-out splits (securely aggregated).
type EvalLine struct {
	AfterRound int     `json:"after_round"`
	ID         uint64  `json:"id"`
	Model      uint64  `json:"model"`
	Agents     int     `json:"agents"`
	Examples   int     `json:"examples"`
	Loss       float64 `json:"held_out_loss"`
	Accuracy   float64 `json:"held_out_accuracy"`
}

// Report is the JSON log the demo writes.
type Report struct {
	Started  time.Time       `json:"started"`
	Seconds  float64         `json:"seconds"`
	Agents   int             `json:"agents"`
	Job      api.JobSpec     `json:"job"`
	Rounds   []RoundLine     `json:"rounds"`
	Evals    []EvalLine      `json:"evals,omitempty"`
	Reached  bool            `json:"reached_target"`
	Rollout  *api.Rollout    `json:"rollout,omitempty"`
	Predict  json.RawMessage `json:"prediction,omitempty"`
	Warnings []string        `json:"warnings,omitempty"`
}

func (o *Options) defaults() error {
	if o.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		o.Binary = exe
	}
	if o.Agents == 0 {
		o.Agents = 20
	}
	if o.Rounds == 0 {
		o.Rounds = 100
	}
	if o.Target == 0 {
		o.Target = 0.95
	}
	if o.Out == "" {
		o.Out = "demo-out"
	}
	if o.Partition == "" {
		o.Partition = "pathological"
	}
	if o.MNIST == "" {
		return errors.New("demo: the MNIST folder is required")
	}
	if err := mnist.Check(o.MNIST); err != nil {
		return fmt.Errorf("demo: -mnist: %w", err)
	}
	return nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o600)
}

// Run runs the demo, printing progress to w.
func Run(ctx context.Context, o Options, w io.Writer) (rep *Report, err error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	start := time.Now()
	rep = &Report{Started: start.UTC(), Agents: o.Agents}
	say := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	if o.Dir == "" {
		d, mkErr := os.MkdirTemp("", "fedge-demo-")
		if mkErr != nil {
			return nil, mkErr
		}
		o.Dir = d
		// A failed run keeps its folder: the logs say why.
		defer func() {
			if err == nil && !o.Keep {
				os.RemoveAll(d)
				return
			}
			say("kept the cluster's folder %s (each process logs to <node or agent>/log)", d)
		}()
	}
	// Any process that dies on its own ends the demo at once, with its
	// log's last lines as the error.
	ctx, fail := context.WithCancelCause(ctx)
	defer fail(nil)
	c, err := StartCluster(ctx, ClusterOptions{Binary: o.Binary, Dir: o.Dir, Died: fail})
	if err != nil {
		if cause := context.Cause(ctx); cause != nil {
			err = cause
		}
		return nil, err
	}
	defer func() {
		c.Close()
		say("stopped every process the demo started")
		if cause := context.Cause(ctx); err != nil && cause != nil && !errors.Is(cause, context.Canceled) {
			err = cause
		}
	}()
	adm := c.Admin
	st, err := c.WaitLeader(ctx, time.Minute)
	if err != nil {
		return nil, err
	}
	say("cluster %q up: 3 coordinators, leader %s (%s)", st.Cluster, st.LeaderID, st.LeaderAddr)

	// The fleet: one process per agent, each with its own shard.
	canaries := max(3, o.Agents/5)
	if err := c.AddAgents(ctx, AgentOptions{N: o.Agents, MNIST: o.MNIST, Partition: o.Partition, Canaries: canaries}); err != nil {
		return nil, err
	}
	var http []string
	for _, a := range c.Agents {
		http = append(http, a.HTTP)
	}
	say("%d agents enrolled and connected (%d canaries), each with a %s shard of MNIST", o.Agents, canaries, o.Partition)

	// The job.
	_, test, err := data.LoadMNIST(o.MNIST)
	if err != nil {
		return nil, err
	}
	spec := api.JobSpec{
		Name: "demo-2nn", Model: "2nn", Rounds: o.Rounds, Fraction: 1, MinClients: 3, Seed: 1,
		Plan:      api.LocalPlan{Epochs: 1, BatchSize: 50, LR: 0.1},
		Strategy:  api.StrategySpec{Name: "fedavgm", Momentum: 0.5},
		SecAgg:    api.SecAggSpec{Enabled: true, Clip: 1, Bits: 16},
		Deadline:  api.Deadlines{Train: api.Duration(120 * time.Second), Stage: api.Duration(30 * time.Second)},
		Push:      "int8", // new versions travel as int8 deltas (about a fifth of a model file)
		EvalEvery: o.EvalEvery,
	}
	rep.Job = spec
	job, err := adm.Jobs().Start(ctx, spec)
	if err != nil {
		return nil, err
	}
	say("job %s: 2nn, FedAvgM, SecAgg+ on, int8 pushes, all %d agents per round, E=%d B=%d lr=%g", job.ID, o.Agents, spec.Plan.Epochs, spec.Plan.BatchSize, spec.Plan.LR)
	say("%5s %5s %5s %8s %10s %10s %7s %8s", "round", "parts", "drops", "train", "bytes in", "bytes out", "secs", "test acc")
	seen := map[uint64]bool{}
	best := RoundLine{}
	for !rep.Reached {
		if ctx.Err() != nil {
			return rep, context.Cause(ctx)
		}
		rounds, err := adm.Rounds().List(ctx, api.RoundsRequest{Job: job.ID}, api.QueryOptions{})
		if err != nil {
			return rep, err
		}
		sort.Slice(rounds, func(a, b int) bool { return rounds[a].ID < rounds[b].ID })
		for _, r := range rounds {
			if seen[r.ID] || r.State == api.RoundRunning {
				continue
			}
			seen[r.ID] = true
			if r.Kind == api.RoundEval {
				if r.State != api.RoundCommitted {
					say("eval after round %d %s: %s", r.Number, r.State, r.Error)
					continue
				}
				ev := EvalLine{AfterRound: r.Number, ID: r.ID, Model: r.ModelIn, Agents: int(r.Metrics["survivors"]),
					Examples: int(r.Metrics["eval_examples"]), Loss: r.Metrics["eval_loss"], Accuracy: r.Metrics["eval_accuracy"]}
				rep.Evals = append(rep.Evals, ev)
				say("eval after round %d: held-out accuracy %.2f%% over %d examples on %d agents", ev.AfterRound, 100*ev.Accuracy, ev.Examples, ev.Agents)
				continue
			}
			if r.State != api.RoundCommitted {
				say("round %d %s: %s", r.Number, r.State, r.Error)
				continue
			}
			met, err := adm.EvaluateModel(ctx, r.ModelOut, test)
			if err != nil {
				return rep, err
			}
			acc := met.Accuracy()
			line := RoundLine{Round: r.Number, ID: r.ID, Model: r.ModelOut, Participants: len(r.Participants), Survivors: int(r.Metrics["survivors"]),
				BytesIn: r.BytesIn, BytesOut: r.BytesOut, Seconds: r.EndedAt.Sub(r.StartedAt).Seconds(), TrainLoss: r.Metrics["train_loss"], Accuracy: acc}
			line.Dropouts = line.Participants - line.Survivors
			rep.Rounds = append(rep.Rounds, line)
			say("%5d %5d %5d %8.4f %10d %10d %7.1f %7.2f%%", line.Round, line.Participants, line.Dropouts, line.TrainLoss, line.BytesIn, line.BytesOut, line.Seconds, 100*acc)
			if acc > best.Accuracy {
				best = line
			}
			if acc >= o.Target {
				rep.Reached = true
				break
			}
		}
		js, err := adm.Jobs().Status(ctx, job.ID, api.QueryOptions{})
		if err == nil && js.State != api.JobRunning && !rep.Reached {
			if len(rounds) == len(seen) {
				rep.Warnings = append(rep.Warnings, fmt.Sprintf("job ended (%s) before reaching %.0f%%", js.State, 100*o.Target))
				break
			}
		}
		if !rep.Reached {
			time.Sleep(300 * time.Millisecond)
		}
	}
	_ = adm.Jobs().Stop(ctx, job.ID)
	if rep.Reached {
		say("reached %.2f%% test accuracy at round %d (model v%d) in %.0fs", 100*best.Accuracy, best.Round, best.Model, time.Since(start).Seconds())
	} else {
		say("did not reach %.0f%%: best %.2f%% at round %d", 100*o.Target, 100*best.Accuracy, best.Round)
	}

	// The rollout: canaries evaluate candidate and baseline on their own
	// held-out data; the coordinator sees only the secure sums.
	if best.Model != 0 {
		ro, err := rollout(ctx, adm, best.Model, say)
		if err != nil {
			rep.Warnings = append(rep.Warnings, "rollout: "+err.Error())
			say("rollout: %v", err)
		}
		rep.Rollout = ro
		if ro != nil && ro.State == api.RolloutPromoted {
			pred, err := predict(ctx, http, best.Model, test, say)
			if err != nil {
				rep.Warnings = append(rep.Warnings, "predict: "+err.Error())
				say("predict: %v", err)
			}
			rep.Predict = pred
		}
	}
	rep.Seconds = time.Since(start).Seconds()
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return rep, err
	}
	if err := writeJSON(filepath.Join(o.Out, "rounds.json"), rep); err != nil {
		return rep, err
	}
	if err := writePlot(filepath.Join(o.Out, "accuracy.png"), rep.Rounds, rep.Evals, o.Target); err != nil {
		return rep, err
	}
	say("wrote %s and %s (%.0fs in all)", filepath.Join(o.Out, "accuracy.png"), filepath.Join(o.Out, "rounds.json"), rep.Seconds)
	if !rep.Reached {
		return rep, fmt.Errorf("demo: target accuracy %.0f%% not reached", 100*o.Target)
	}
	return rep, nil
}

func rollout(ctx context.Context, adm *api.Client, model uint64, say func(string, ...any)) (*api.Rollout, error) {
	cohorts, err := api.ParseCohorts("canary[tier=canary]=100%,all=100%")
	if err != nil {
		return nil, err
	}
	ro, err := adm.Rollouts().Start(ctx, api.RolloutRequest{Model: model, Cohorts: cohorts, Gate: "accuracy>=baseline-0.5"})
	if err != nil {
		return nil, err
	}
	say("rollout %s of model v%d: canary (tier=canary) then all; gate accuracy>=baseline-0.5", ro.ID, model)
	var final api.Rollout
	err = wait.Until(ctx, 180*time.Second, func() bool {
		all, err := adm.Rollouts().Status(ctx, api.QueryOptions{})
		if err != nil {
			return false
		}
		for _, r := range all {
			if r.ID == ro.ID {
				final = r
			}
		}
		return final.State == api.RolloutPromoted || final.State == api.RolloutRolledBack
	})
	for _, d := range final.Decisions {
		if d.Evidence != nil {
			say("  %s: %s by %s — candidate %.2f%% vs baseline %.2f%% on %d canary agents' held-out data (%.0f examples, secure sums only)",
				final.StageName(d.Stage), d.Action, d.By, d.Evidence.CandidateAccuracy, d.Evidence.BaselineAccuracy, d.Evidence.Agents, d.Evidence.CandidateTotal)
		} else {
			say("  %s: %s by %s %s", final.StageName(d.Stage), d.Action, d.By, d.Reason)
		}
	}
	if err != nil {
		return &final, fmt.Errorf("rollout did not finish: %w", err)
	}
	say("rollout %s: %s", final.ID, final.State)
	return &final, nil
}

// predict asks an agent's local inference server for a test image's class,
// once the agent serves the promoted model.
func predict(ctx context.Context, addrs []string, model uint64, test *tensor.Dataset, say func(string, ...any)) (json.RawMessage, error) {
	addr := addrs[len(addrs)-1] // a non-canary agent: it gets the model at promotion
	var info struct {
		Version uint64 `json:"version"`
	}
	if err := wait.Until(ctx, 60*time.Second, func() bool {
		resp, err := http.Get("http://" + addr + "/v1/model")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		return json.NewDecoder(resp.Body).Decode(&info) == nil && info.Version == model
	}); err != nil {
		return nil, fmt.Errorf("agent at %s still serves v%d", addr, info.Version)
	}
	body, _ := json.Marshal(map[string]any{"inputs": [][]float32{test.Row(0)}})
	resp, err := http.Post("http://"+addr+"/v1/predict", "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	var parsed struct {
		Predictions []struct {
			Class int `json:"class"`
		} `json:"predictions"`
	}
	_ = json.Unmarshal(out, &parsed)
	got := -1
	if len(parsed.Predictions) > 0 {
		got = parsed.Predictions[0].Class
	}
	say("agent at http://%s serves model v%d: POST /v1/predict on test image 0 → class %d (label %d)", addr, model, got, test.Y[0])
	return out, nil
}
