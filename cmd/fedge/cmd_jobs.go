package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/tensor"
)

func jobsCommands() []command {
	return []command{
		{"start", "start a training job from a job file", runJobsStart},
		{"list", "list training jobs", runJobsList},
		{"status", "show a job's progress (and follow it with -watch)", runJobsStatus},
		{"stop", "stop a running job", runJobsStop},
	}
}

var jobsStartSpec = cmdSpec{
	path: "jobs start",
	help: `Start a federated training job described by a JSON job file: the model
("logreg", "2nn", "cnn", "gcn", or a full spec), the data schema agents must
hold, the number of rounds and of clients per round, the local plan (epochs,
batch size, learning rate), the server strategy, and the secure aggregation
and differential privacy settings. Omitted fields take their documented
defaults; unknown fields are an error. The file is checked before it is sent.

"data": {"standardize": true} runs a statistics round first: the agents'
per-feature sums are added under secure aggregation and the first model
standardizes its inputs with them. "dp": {"enabled": true, "clip": 1,
"noise_multiplier": 1, "adaptive": true} clips and noises every update and
moves the clip towards the median update norm, privately (it needs
"secagg": {"enabled": true}: the agents add the noise inside the secure
sum). "push": "int8"
sends each new version to agents as a quantized delta (about a fifth of a
model file; the committed model is the quantized one) instead of the
default lossless delta (about half). "eval_every": N evaluates the newest
model on the agents' held-out splits after every N-th round, summed under
secure aggregation (at least 3 agents); jobs status shows the accuracy.

A model fedge does not run (PyTorch, numpy, …; agents train it with their
external trainer, docs/TRAINER.md) starts from imported weights:
"init_model": VERSION names a version fedge models import made, or
"init_weights": "init.safetensors" (relative to the job file) imports the
file first and starts the job from it.

The coordinator checks the job against the data the connected agents report
(their features and classes against the model's, their data kind against
"data": {"kind": ...}) and refuses a job none of them can train, naming the
mismatch; -force starts it anyway.`,
	example: `cat > job.json <<'EOF'
{"name": "mnist", "model": "2nn", "data": {"kind": "mnist", "features": 784, "classes": 10},
 "rounds": 50, "fraction": 0.5, "min_clients": 5, "plan": {"epochs": 1, "batch_size": 10, "lr": 0.1},
 "secagg": {"enabled": true}}
EOF
fedge jobs start -f job.json`,
}

func runJobsStart(args []string, stdout, stderr io.Writer) int {
	c := newCLI(stdout, stderr, jobsStartSpec, true)
	file := c.fs.String("f", "", "job file (JSON)")
	quiet := c.fs.Bool("q", false, "print only the job ID (for scripts: JOB=$(fedge jobs start -q -f job.json))")
	force := c.fs.Bool("force", false, "start the job even if no connected agent's data fits its model")
	if _, code, ok := c.parse(args, 0, 0); !ok {
		return code
	}
	if *file == "" {
		return c.usageFail(usagef("-f job.json is required"))
	}
	spec, weights, err := loadJobFile(*file)
	if err != nil {
		return c.inputFail(err)
	}
	if *force {
		spec.Force = true
	}
	var init *tensor.Model
	if weights != "" {
		if init, err = readModelFile(weights, spec.Name); err != nil {
			return c.usageFail(fmt.Errorf("init_weights: %w", err))
		}
	}
	return do(c, func(ctx context.Context, cl *api.Client, q api.QueryOptions) (api.Job, error) {
		if init != nil {
			v, err := cl.Models().Import(ctx, "", init)
			if err != nil {
				return api.Job{}, fmt.Errorf("importing init_weights %s: %w", weights, err)
			}
			spec.InitModel = v.Version
		}
		return cl.Jobs().Start(ctx, spec)
	}, func(w io.Writer, j api.Job) error {
		if *quiet {
			_, err := fmt.Fprintln(w, j.ID)
			return err
		}
		_, err := fmt.Fprintf(w, "Started job %s: model %s, %d rounds, strategy %s, secure aggregation %s.\nFollow it with: fedge jobs status -watch %s\n",
			j.ID, jobModel(j.Spec), j.Spec.Rounds, j.Spec.Strategy.Name, onOff(j.Spec.SecAgg.Enabled), j.ID)
		return err
	})
}

// jobFile is a job file: a JobSpec plus what only the CLI handles.
type jobFile struct {
	api.JobSpec
	// InitWeights names a model file (safetensors or a fedge model file,
	// relative to the job file) that jobs start imports, then starts the
	// job from (init_model).
	InitWeights string `json:"init_weights,omitempty"`
}

// loadJobFile reads and checks a job file, rejecting unknown fields; it
// returns the spec and the path of its init_weights file, if any.
func loadJobFile(path string) (api.JobSpec, string, error) {
	var f jobFile
	b, err := os.ReadFile(path)
	if err != nil {
		return f.JobSpec, "", err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return f.JobSpec, "", fmt.Errorf("%s: %w", path, unknownFieldHint[jobFile](err))
	}
	if dec.More() {
		return f.JobSpec, "", fmt.Errorf("%s: trailing content after the JSON object", path)
	}
	spec, weights := f.JobSpec, f.InitWeights
	if weights != "" {
		if spec.InitModel != 0 {
			return spec, "", fmt.Errorf("%s: init_weights and init_model both name the initial model: keep one", path)
		}
		if !filepath.IsAbs(weights) {
			weights = filepath.Join(filepath.Dir(path), weights)
		}
		// Checked as if init_model were set: the import assigns it.
		spec.InitModel = math.MaxUint64
	}
	err = spec.Normalize()
	if weights != "" {
		spec.InitModel = 0
	}
	if err != nil {
		return spec, "", fmt.Errorf("%s: %w", path, err)
	}
	return spec, weights, nil
}

func jobModel(s api.JobSpec) string {
	switch {
	case s.Model != "":
		return s.Model
	case len(s.Spec) > 0:
		return "custom"
	}
	return "from " + version(s.InitModel)
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

var jobsListSpec = cmdSpec{
	path:    "jobs list",
	help:    `List training jobs with their state, model, rounds done out of rounds planned, and the latest model version each committed.`,
	example: "fedge jobs list",
}

func runJobsList(args []string, stdout, stderr io.Writer) int {
	c := newCLI(stdout, stderr, jobsListSpec, true)
	if _, code, ok := c.parse(args, 0, 0); !ok {
		return code
	}
	return do(c, func(ctx context.Context, cl *api.Client, q api.QueryOptions) ([]api.Job, error) {
		return cl.Jobs().List(ctx, q)
	}, func(w io.Writer, jobs []api.Job) error {
		if len(jobs) == 0 {
			_, err := fmt.Fprintln(w, "No jobs. Start one with `fedge jobs start -f job.json`.")
			return err
		}
		t := newTable(w, "ID", "STATE", "MODEL", "ROUNDS", "LATEST", "SECAGG", "DP", "CREATED")
		for _, j := range jobs {
			t.row(j.ID, j.State, jobModel(j.Spec), fmt.Sprintf("%d/%d", j.RoundsDone, j.Spec.Rounds), version(j.Model),
				onOff(j.Spec.SecAgg.Enabled), onOff(j.Spec.DP.Enabled), when(j.CreatedAt))
		}
		return t.flush()
	})
}

var jobsStatusSpec = cmdSpec{
	path: "jobs status",
	args: "ID",
	help: `Show a job's progress: state, rounds done, latest model, privacy spent and
its last rounds, and the last held-out accuracy of a job with eval_every.
With -watch, print one line per committed round (round number/total,
participants, survivors, train loss, seconds) and per federated evaluation
(held-out accuracy, examples, agents) until the job finishes; Ctrl-C stops watching, not the job. With -json and -watch, each
round is one JSON line and the final job record ends the stream. Watching
exits 1 if the job failed.`,
	example: "fedge jobs status -watch mnist-1a2b3c4d5e6f",
}

func runJobsStatus(args []string, stdout, stderr io.Writer) int {
	c := newCLI(stdout, stderr, jobsStatusSpec, true)
	watch := c.fs.Bool("watch", false, "follow the job, one line per round, until it finishes")
	interval := c.fs.Duration("interval", time.Second, "how often -watch polls")
	pos, code, ok := c.parse(args, 1, 1)
	if !ok {
		return code
	}
	if *interval <= 0 {
		return c.usageFail(usagef("-interval must be positive"))
	}
	id := pos[0]
	if !*watch {
		cl, err := c.client()
		if err != nil {
			return c.fail(err)
		}
		defer cl.Close()
		ctx := context.Background()
		var j api.Job
		if err := c.call(ctx, func(ctx context.Context) (err error) { j, err = cl.Jobs().Status(ctx, id, c.query()); return err }); err != nil {
			return c.fail(err)
		}
		if c.admin.json {
			if err := writeJSON(stdout, j); err != nil {
				return c.fail(err)
			}
			return exitOK
		}
		var rounds []api.Round
		if err := c.call(ctx, func(ctx context.Context) (err error) {
			rounds, err = cl.Rounds().List(ctx, api.RoundsRequest{Job: id, Limit: 5}, c.query())
			return err
		}); err != nil {
			return c.fail(err)
		}
		if err := printJob(stdout, j, rounds); err != nil {
			return c.fail(err)
		}
		return exitOK
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return watchJob(ctx, c, id, *interval)
}

// printJob writes a job's details and its recent rounds.
func printJob(w io.Writer, j api.Job, rounds []api.Round) error {
	privacy := "-"
	if p := j.Privacy; p != nil {
		privacy = fmt.Sprintf("epsilon %.3g at delta %.g after %d rounds", p.Epsilon, p.Delta, p.Rounds)
	}
	state := j.State
	if j.Error != "" {
		state += ": " + j.Error
	}
	if j.Waiting != "" {
		state += " (waiting: " + j.Waiting + ")"
	}
	if p := j.Privacy; p != nil && p.ClipNorm > 0 {
		privacy += fmt.Sprintf("; next clip %.4g", p.ClipNorm)
	}
	heldOut := "-"
	if n := j.Spec.EvalEvery; n > 0 {
		heldOut = fmt.Sprintf("every %d rounds; none yet", n)
		if e := j.Eval; e != nil {
			heldOut = fmt.Sprintf("every %d rounds; after round %d: accuracy %s, loss %.4f over %s examples on %d agents (model %s)",
				n, e.AfterRound, percent(e.Accuracy), e.Loss, thousands(e.Examples), e.Agents, version(e.Model))
		}
	}
	if err := kv(w,
		"ID", j.ID,
		"State", state,
		"Model", jobModel(j.Spec),
		"Pushes", j.Spec.Push,
		"Rounds", fmt.Sprintf("%d/%d", j.RoundsDone, j.Spec.Rounds),
		"Latest model", version(j.Model),
		"Clients", fmt.Sprintf("fraction %g, at least %d, over-select %g", j.Spec.Fraction, j.Spec.MinClients, j.Spec.OverSelect),
		"Plan", fmt.Sprintf("%d epoch(s), batch %d, lr %g", j.Spec.Plan.Epochs, j.Spec.Plan.BatchSize, j.Spec.Plan.LR),
		"Strategy", j.Spec.Strategy.Name,
		"Secure aggregation", onOff(j.Spec.SecAgg.Enabled),
		"Privacy", privacy,
		"Held-out evaluation", heldOut,
		"Data quality", dataQuality(j),
		"Created", when(j.CreatedAt),
		"Updated", when(j.UpdatedAt),
	); err != nil {
		return err
	}
	if len(j.AgentErrors) > 0 {
		fmt.Fprintln(w, "\nAgent errors (declined or left a round, not cleared by a later round):")
		for _, e := range j.AgentErrors {
			fmt.Fprintf(w, "  %s\n", agentErrorLine(e))
		}
	}
	if len(rounds) == 0 {
		return nil
	}
	fmt.Fprintln(w, "\nRecent rounds:")
	if err := roundsTable(w, rounds); err != nil {
		return err
	}
	return latestGroups(w, rounds)
}

// agentErrorLine is one agent's reason for leaving a round of a job.
func agentErrorLine(e api.AgentError) string {
	return fmt.Sprintf("agent %s: %s (round %d, %s)", e.Agent, e.Reason, e.Round, when(e.At))
}

// watchJob polls the job's rounds every interval and prints each finished
// round once, until the job leaves the running state or ctx ends.
func watchJob(ctx context.Context, c *cli, id string, interval time.Duration) int {
	cl, err := c.client()
	if err != nil {
		return c.fail(err)
	}
	defer cl.Close()
	printed := map[uint64]bool{}
	var after uint64                  // every round up to this ID is printed or was not a round to print
	told := map[api.AgentError]bool{} // agent errors already printed
	var j api.Job
	first := true
	for {
		if err := c.call(ctx, func(ctx context.Context) (err error) { j, err = cl.Jobs().Status(ctx, id, c.query()); return err }); err != nil {
			if ctx.Err() != nil {
				return exitOK
			}
			return c.fail(err)
		}
		var rounds []api.Round
		if err := c.call(ctx, func(ctx context.Context) (err error) {
			// Only the rounds not yet printed: a long job's whole list
			// would be read again every second.
			rounds, err = cl.Rounds().List(ctx, api.RoundsRequest{Job: id, After: after}, c.query())
			return err
		}); err != nil {
			if ctx.Err() != nil {
				return exitOK
			}
			return c.fail(err)
		}
		if first && !c.admin.json {
			fmt.Fprintf(c.stdout, "Watching job %s (%s, %d rounds); Ctrl-C stops watching.\n", j.ID, jobModel(j.Spec), j.Spec.Rounds)
			first = false
		}
		for _, e := range j.AgentErrors {
			if told[e] || c.admin.json {
				continue // -json: the errors are in the final job record
			}
			told[e] = true
			fmt.Fprintln(c.stdout, agentErrorLine(e))
		}
		after = api.EndedThrough(rounds, after)
		for _, r := range rounds {
			if printed[r.ID] || r.State == api.RoundRunning {
				continue
			}
			printed[r.ID] = true
			if c.admin.json {
				if err := json.NewEncoder(c.stdout).Encode(r); err != nil {
					return c.fail(err)
				}
				continue
			}
			fmt.Fprintln(c.stdout, progressLine(r, j.Spec.Rounds))
		}
		if j.State != api.JobRunning {
			if c.admin.json {
				if err := json.NewEncoder(c.stdout).Encode(j); err != nil {
					return c.fail(err)
				}
			} else {
				held := ""
				if e := j.Eval; e != nil {
					held = fmt.Sprintf("; held-out accuracy %s after round %d", percent(e.Accuracy), e.AfterRound)
				}
				fmt.Fprintf(c.stdout, "Job %s %s after %d/%d rounds; latest model %s%s.\n", j.ID, j.State, j.RoundsDone, j.Spec.Rounds, version(j.Model), held)
			}
			if j.State == api.JobFailed {
				if j.Error != "" {
					fmt.Fprintf(c.stderr, "fedge jobs status: job %s failed: %s\n", j.ID, j.Error)
				}
				return exitFailed
			}
			return exitOK
		}
		select {
		case <-ctx.Done():
			return exitOK
		case <-time.After(interval):
		}
	}
}

// progressLine is one finished round of a watched job.
func progressLine(r api.Round, total int) string {
	head := fmt.Sprintf("round %d/%d", r.Number, total)
	if r.Kind == api.RoundEval && r.Job != "" {
		head = fmt.Sprintf("eval after round %d", r.Number)
		if r.State != api.RoundCommitted {
			return fmt.Sprintf("%s %s: %s", head, r.State, r.Error)
		}
		return fmt.Sprintf("%s: held-out accuracy %s over %s examples on %d agents, loss %.4f",
			head, percent(r.Metrics["eval_accuracy"]), thousands(int(r.Metrics["eval_examples"])), survivors(r), r.Metrics["eval_loss"])
	}
	if r.Kind != api.RoundTrain {
		head = fmt.Sprintf("%s round %d", r.Kind, r.ID)
	}
	if r.State != api.RoundCommitted {
		return fmt.Sprintf("%s  %s: %s", head, r.State, r.Error)
	}
	line := fmt.Sprintf("%s  participants %d  survivors %d  train loss %.4f  %.2fs  model %s",
		head, r.ParticipantCount, survivors(r), r.Metrics["train_loss"], roundSeconds(r), version(r.ModelOut))
	if g := groupsBrief(r); g != "" {
		line += "  groups " + g
	}
	return line
}

// survivors is how many agents' inputs made it into the round's sum.
func survivors(r api.Round) int {
	if v, ok := r.Metrics["survivors"]; ok {
		return int(v)
	}
	if n := len(r.Stages); n > 0 {
		return r.Stages[n-1].Survivors
	}
	return 0
}

// roundSeconds is how long the round took.
func roundSeconds(r api.Round) float64 {
	if v, ok := r.Metrics["seconds"]; ok {
		return v
	}
	if r.EndedAt.IsZero() {
		return 0
	}
	return r.EndedAt.Sub(r.StartedAt).Seconds()
}

var jobsStopSpec = cmdSpec{
	path:    "jobs stop",
	args:    "ID",
	help:    `Stop a running job: it runs no further rounds, and every model it already committed stays in the registry.`,
	example: "fedge jobs stop mnist-1a2b3c4d5e6f",
}

func runJobsStop(args []string, stdout, stderr io.Writer) int {
	c := newCLI(stdout, stderr, jobsStopSpec, true)
	pos, code, ok := c.parse(args, 1, 1)
	if !ok {
		return code
	}
	return do(c, func(ctx context.Context, cl *api.Client, q api.QueryOptions) (struct{}, error) {
		return noAnswer(cl.Jobs().Stop(ctx, pos[0]))
	}, func(w io.Writer, _ struct{}) error {
		_, err := fmt.Fprintf(w, "Stopped job %s.\n", pos[0])
		return err
	})
}

// dataQuality says what a job's cleaning rules did to the federation's
// training data ("-" for a job without data.columns).
func dataQuality(j api.Job) string {
	if len(j.Spec.Data.Columns) == 0 {
		return "-"
	}
	q := j.Data
	if q == nil {
		return "not yet summed"
	}
	return fmt.Sprintf("%s of %s rows kept (%s dropped); %s cells filled, %s clipped, %s unknown categories; summed over %d agents in round %d",
		thousands(q.Kept), thousands(q.Rows), thousands(q.Dropped), thousands(q.Filled), thousands(q.Clipped), thousands(q.Unknown), q.Agents, q.Round)
}
