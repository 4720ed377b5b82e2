package agent

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fedge/fedge/crypto/secagg"
	"github.com/fedge/fedge/internal/memlimit"
	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/tensor"
	"github.com/fedge/fedge/tensor/safetensors"
)

// TrainerContractVersion is the version of the trainer contract
// (docs/TRAINER.md) this agent speaks; plan.json carries it.
//
// History:
//
//	1  train and evaluate tasks; plan.json, result.json, weights in
//	   safetensors (F32); exit 0 success, 75 decline, other failure.
const TrainerContractVersion = 1

// Files and limits of the trainer contract.
const (
	trainerInput    = "input"
	trainerOutput   = "output"
	planFile        = "plan.json"
	resultFile      = "result.json"
	weightsFile     = "weights.safetensors"
	maxResultBytes  = 64 << 10
	stderrTailBytes = 4 << 10
	// exitDecline is the exit status (EX_TEMPFAIL) by which a trainer
	// says it cannot take part now (its data is unavailable, say).
	exitDecline = 75
)

// Trainer tasks.
const (
	TaskTrain    = "train"
	TaskEvaluate = "evaluate"
)

// ErrTrainer reports an external trainer run that failed or whose output
// did not pass the agent's checks; errors.As gives the *TrainerError.
var ErrTrainer = errors.New("agent: external trainer failed")

// TrainerError is a failed trainer run. Its message is the reason the
// agent reports when it leaves the round ("trainer exited 1: <last stderr
// line>").
type TrainerError struct {
	Reason string
}

func (e *TrainerError) Error() string { return e.Reason }

// Unwrap makes errors.Is(err, ErrTrainer) hold.
func (e *TrainerError) Unwrap() error { return ErrTrainer }

func trainerErr(format string, args ...any) error {
	return &TrainerError{Reason: fmt.Sprintf(format, args...)}
}

// TrainerPlan is plan.json, the input of one trainer run (contract
// version 1; docs/TRAINER.md is the reference).
type TrainerPlan struct {
	ContractVersion int    `json:"contract_version"`
	Task            string `json:"task"` // "train" or "evaluate"
	Job             string `json:"job"`
	RoundID         uint64 `json:"round_id"`
	ModelVersion    uint64 `json:"model_version"`
	ModelName       string `json:"model_name,omitempty"`
	// Split is the local data split to use: "train" or "held_out".
	Split       string  `json:"split"`
	Epochs      int     `json:"epochs,omitempty"`
	BatchSize   int     `json:"batch_size,omitempty"`
	LR          float64 `json:"lr,omitempty"`
	Optimizer   string  `json:"optimizer,omitempty"`
	Momentum    float64 `json:"momentum,omitempty"`
	WeightDecay float64 `json:"weight_decay,omitempty"`
	ProximalMu  float64 `json:"proximal_mu"`
	Seed        uint64  `json:"seed"`
	// Deadline is when the agent stops the run (RFC 3339).
	Deadline      time.Time               `json:"deadline"`
	InputWeights  string                  `json:"input_weights"`
	OutputWeights string                  `json:"output_weights,omitempty"`
	Result        string                  `json:"result"`
	Tensors       []tensor.ExternalTensor `json:"tensors"`
}

// TrainResult is result.json of a train run.
type TrainResult struct {
	Examples int64              `json:"examples"`
	Metrics  map[string]float64 `json:"metrics,omitempty"`
}

// EvalResult is result.json of an evaluate run.
type EvalResult struct {
	Correct int64   `json:"correct"`
	Total   int64   `json:"total"`
	Loss    float64 `json:"loss"` // mean loss per example
}

// trainerRun is one prepared run folder.
type trainerRun struct {
	dir, in, out string
	plan         TrainerPlan
}

// prepareRun creates a fresh run folder and writes the input weights and
// plan.json into it.
func (a *Agent) prepareRun(plan TrainerPlan, m *tensor.Model) (*trainerRun, error) {
	root := a.cfg.Trainer.workDir(a.cfg.DataDir)
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, trainerErr("trainer work dir: %v", err)
	}
	dir, err := os.MkdirTemp(root, fmt.Sprintf("round-%d-%s-", plan.RoundID, plan.Task))
	if err != nil {
		return nil, trainerErr("trainer run folder: %v", err)
	}
	r := &trainerRun{dir: dir, in: filepath.Join(dir, trainerInput), out: filepath.Join(dir, trainerOutput)}
	for _, d := range []string{r.in, r.out, filepath.Join(dir, "tmp")} {
		if err := os.Mkdir(d, 0o700); err != nil {
			os.RemoveAll(dir)
			return nil, trainerErr("trainer run folder: %v", err)
		}
	}
	plan.ContractVersion = TrainerContractVersion
	plan.ModelName = m.Spec.Name
	plan.Tensors = m.Spec.External
	plan.InputWeights = filepath.Join(r.in, weightsFile)
	plan.Result = filepath.Join(r.out, resultFile)
	if plan.Task == TaskTrain {
		plan.OutputWeights = filepath.Join(r.out, weightsFile)
	}
	r.plan = plan
	if err := writeWeights(plan.InputWeights, m); err != nil {
		os.RemoveAll(dir)
		return nil, trainerErr("writing the trainer's input weights: %v", err)
	}
	b, err := json.MarshalIndent(plan, "", "  ")
	if err == nil {
		err = os.WriteFile(filepath.Join(r.in, planFile), append(b, '\n'), 0o600)
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, trainerErr("writing plan.json: %v", err)
	}
	return r, nil
}

// writeWeights writes m's parameters as safetensors, unsynced: the run
// folder is scratch, read back at once from the page cache.
func writeWeights(path string, m *tensor.Model) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	_, err = safetensors.WriteModel(bw, m, nil)
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// trainerEnv is the clean environment of a trainer run.
func (a *Agent) trainerEnv(r *trainerRun) []string {
	path := os.Getenv("PATH")
	if path == "" {
		path = "/usr/local/bin:/usr/bin:/bin"
	}
	env := []string{
		"PATH=" + path,
		"HOME=" + r.dir,
		"TMPDIR=" + filepath.Join(r.dir, "tmp"),
		"LANG=C.UTF-8",
		"PYTHONUNBUFFERED=1",
		"FEDGE_CONTRACT_VERSION=" + strconv.Itoa(TrainerContractVersion),
		"FEDGE_TASK=" + r.plan.Task,
		"FEDGE_PLAN=" + filepath.Join(r.in, planFile),
		"FEDGE_INPUT_WEIGHTS=" + r.plan.InputWeights,
		"FEDGE_RESULT=" + r.plan.Result,
		"FEDGE_RUN_DIR=" + r.dir,
	}
	if r.plan.OutputWeights != "" {
		env = append(env, "FEDGE_OUTPUT_WEIGHTS="+r.plan.OutputWeights)
	}
	env = append(env, a.cfg.Jobs.threadEnv()...) // before Trainer.Env, which may override them
	for k, v := range a.cfg.Trainer.Env {
		env = append(env, k+"="+v)
	}
	return env
}

// runTrainer runs the trainer command on a prepared folder until it exits,
// ctx ends or the timeout passes, and turns every failure into a
// *TrainerError naming it.
func (a *Agent) runTrainer(ctx context.Context, r *trainerRun) error {
	tc := &a.cfg.Trainer
	timeout := tc.timeout()
	if d, ok := ctx.Deadline(); ok && time.Until(d) < timeout {
		timeout = time.Until(d)
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	argv := tc.Command
	if tc.MemoryMB > 0 {
		// The shell sets the limit on itself and then becomes the trainer,
		// so the trainer starts under it.
		argv = append([]string{"/bin/sh", "-c", `ulimit -v "$0" && exec "$@"`, strconv.Itoa(tc.MemoryMB * 1024)}, tc.Command...)
	}
	cmd := exec.CommandContext(rctx, argv[0], argv[1:]...)
	cmd.Dir = tc.Dir
	if cmd.Dir == "" {
		cmd.Dir = r.dir
	}
	cmd.Env = a.trainerEnv(r)
	cmd.Stdin = nil // /dev/null
	tail := &tailWriter{max: stderrTailBytes}
	cmd.Stderr = tail
	cmd.Stdout = io.Discard
	// Its own process group, so a timeout kills the workers it forked too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // leftovers of the group
	}
	a.log.Debug("trainer ran", "task", r.plan.Task, "round", r.plan.RoundID, "took", took.Round(time.Millisecond), "err", err)
	if err == nil {
		return nil
	}
	last := tail.lastLine()
	if ctx.Err() != nil {
		return fmt.Errorf("trainer stopped: %w", context.Cause(ctx))
	}
	if rctx.Err() != nil {
		return trainerErr("trainer exceeded its timeout of %v%s", timeout.Round(time.Millisecond), suffix(last))
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return trainerErr("trainer killed by signal %d (%v)%s", int(ws.Signal()), ws.Signal(), suffix(last))
		}
		if ee.ExitCode() == exitDecline {
			return trainerErr("trainer declined%s", suffix(last))
		}
		return trainerErr("trainer exited %d%s", ee.ExitCode(), suffix(last))
	}
	return trainerErr("trainer did not start: %v", err)
}

func suffix(last string) string {
	if last == "" {
		return ""
	}
	return ": " + last
}

// tailWriter keeps the last max bytes written to it.
type tailWriter struct {
	max int
	buf []byte
}

func (t *tailWriter) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) > t.max {
		p = p[len(p)-t.max:]
	}
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return n, nil
}

// lastLine returns the last non-empty line, trimmed and bounded.
func (t *tailWriter) lastLine() string {
	lines := strings.Split(strings.TrimSpace(string(bytes.ToValidUTF8(t.buf, []byte("?")))), "\n")
	s := strings.TrimSpace(lines[len(lines)-1])
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// readResult decodes a result.json of at most maxResultBytes into v.
func readResult(path string, v any) error {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return trainerErr("trainer wrote no %s", resultFile)
		}
		return trainerErr("reading %s: %v", resultFile, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxResultBytes+1))
	if err != nil {
		return trainerErr("reading %s: %v", resultFile, err)
	}
	if len(b) > maxResultBytes {
		return trainerErr("trainer's %s exceeds %d bytes", resultFile, maxResultBytes)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return trainerErr("trainer's %s: %v", resultFile, err)
	}
	return nil
}

// readTrainedWeights reads the trainer's output weights into a copy of
// start, checking names, shapes, dtype (safetensors.ReadInto), size and
// that every value is finite.
func readTrainedWeights(path string, spec tensor.Spec, nparams int) (*tensor.Model, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, trainerErr("trainer wrote no output weights (%s)", weightsFile)
		}
		return nil, trainerErr("reading the trainer's weights: %v", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, trainerErr("reading the trainer's weights: %v", err)
	}
	layout := spec.External
	limit := 8 + 4*int64(nparams) + headerAllowance(layout)
	if fi.Size() > limit {
		return nil, trainerErr("trainer's weights file is %d bytes; the model needs at most %d", fi.Size(), limit)
	}
	// ReadInto fills every value of the layout (it refuses a file that
	// does not), so the start weights need not be copied first.
	// Room for the update's trailing words: the update is computed and
	// encoded in this memory (encodeUpdate).
	trained, err := tensor.ModelWith(spec, make([]float32, nparams, nparams+updateSlack))
	if err != nil {
		return nil, trainerErr("trainer's weights: %v", err)
	}
	if _, err := safetensors.ReadInto(bufio.NewReaderSize(f, 1<<20), limit, layout, trained.Params); err != nil {
		return nil, trainerErr("trainer's weights: %v", strings.TrimPrefix(err.Error(), "safetensors.ReadInto: "))
	}
	if i := firstNonFinite(trained.Params); i >= 0 {
		return nil, trainerErr("trainer's weights hold a non-finite value (%v) in tensor %q", trained.Params[i], tensorAt(spec, i))
	}
	return trained, nil
}

// firstNonFinite returns the index of the first NaN or ±Inf in p, or -1.
// It tests the float32 exponent bits (all ones: NaN or Inf) instead of
// widening to float64, which made the check a third of reading a
// 100M-parameter model back (BenchmarkTrainerHandoff100M).
func firstNonFinite(p []float32) int {
	const exp = 0x7f800000
	for i, v := range p {
		if math.Float32bits(v)&exp == exp {
			return i
		}
	}
	return -1
}

// headerAllowance bounds the JSON header a trainer may write for layout:
// generous room per tensor and for metadata.
func headerAllowance(layout []tensor.ExternalTensor) int64 {
	n := int64(64 << 10)
	for _, t := range layout {
		n += int64(len(t.Name)) + 128 + 24*int64(len(t.Shape))
	}
	return min(n, safetensors.MaxHeaderBytes)
}

// tensorAt names the tensor holding flat parameter i.
func tensorAt(s tensor.Spec, i int) string {
	offs, _, err := s.ExternalOffsets()
	if err != nil {
		return "?"
	}
	name := "?"
	for k, off := range offs {
		if off <= i {
			name = s.External[k].Name
		}
	}
	return name
}

// trainExternal runs the external trainer for a training round and
// returns the checked trained model, the example count and the metrics.
func (a *Agent) trainExternal(ctx context.Context, st *roundState, plan *protocol.RoundPlan, start *tensor.Model) (*tensor.Model, int, tensor.TrainStats, error) {
	var stats tensor.TrainStats
	if !a.cfg.Trainer.enabled() {
		return nil, 0, stats, a.trainerFailed(trainerErr("model %d is external and this agent has no trainer configured", plan.ModelVersion))
	}
	var seed [8]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, 0, stats, err
	}
	trainBy := st.deadline(protocol.StageTrain).Add(-st.grace)
	trainBy = trainBy.Add(-time.Duration(trainMargin * float64(time.Until(trainBy))))
	r, err := a.prepareRun(TrainerPlan{
		Task: TaskTrain, Job: st.invite.Job, RoundID: plan.RoundID, ModelVersion: plan.ModelVersion, Split: "train",
		Epochs: int(plan.Epochs), BatchSize: int(plan.BatchSize), LR: plan.LR, Optimizer: plan.Optimizer,
		Momentum: plan.Momentum, WeightDecay: plan.WeightDecay, ProximalMu: plan.Mu,
		Seed: binary.LittleEndian.Uint64(seed[:]), Deadline: trainBy.UTC(),
	}, start)
	if err != nil {
		return nil, 0, stats, a.trainerFailed(err)
	}
	defer os.RemoveAll(r.dir)
	// start is not used from here on (its weights are in the run's file):
	// a large one goes back to the system before the trained weights are
	// read.
	spec, nparams := start.Spec, start.NumParams()
	if 4*nparams >= memlimit.MinReserve {
		start = nil
		debug.FreeOSMemory()
	}
	tctx, cancel := context.WithDeadline(ctx, trainBy)
	defer cancel()
	began := time.Now()
	if err := a.runTrainer(tctx, r); err != nil {
		return nil, 0, stats, a.trainerFailed(err)
	}
	var res TrainResult
	if err := readResult(r.plan.Result, &res); err != nil {
		return nil, 0, stats, a.trainerFailed(err)
	}
	if res.Examples < 1 || res.Examples > math.MaxInt32 {
		return nil, 0, stats, a.trainerFailed(trainerErr("trainer's %s: examples = %d, need 1 to %d", resultFile, res.Examples, math.MaxInt32))
	}
	for k, v := range res.Metrics {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, 0, stats, a.trainerFailed(trainerErr("trainer's %s: metric %q is not finite", resultFile, k))
		}
	}
	if acc, ok := res.Metrics["accuracy"]; ok && !(acc >= 0 && acc <= 1) {
		return nil, 0, stats, a.trainerFailed(trainerErr("trainer's %s: accuracy %v is outside [0, 1]", resultFile, acc))
	}
	trained, err := readTrainedWeights(r.plan.OutputWeights, spec, nparams)
	if err != nil {
		return nil, 0, stats, a.trainerFailed(err)
	}
	stats = tensor.TrainStats{Loss: res.Metrics["loss"], Accuracy: res.Metrics["accuracy"], Duration: time.Since(began), Epochs: int(plan.Epochs)}
	return trained, int(res.Examples), stats, nil
}

// evaluateExternal runs the trainer's evaluate task on model version m.
func (a *Agent) evaluateExternal(ctx context.Context, st *roundState, roundID, version uint64, m *tensor.Model) (protocol.EvalSums, error) {
	if !a.cfg.Trainer.enabled() {
		return protocol.EvalSums{}, a.trainerFailed(trainerErr("model %d is external and this agent has no trainer configured", version))
	}
	by := st.deadline(protocol.StageTrain).Add(-st.grace)
	r, err := a.prepareRun(TrainerPlan{Task: TaskEvaluate, Job: st.invite.Job, RoundID: roundID, ModelVersion: version, Split: "held_out", Deadline: by.UTC()}, m)
	if err != nil {
		return protocol.EvalSums{}, a.trainerFailed(err)
	}
	defer os.RemoveAll(r.dir)
	ectx, cancel := context.WithDeadline(ctx, by)
	defer cancel()
	if err := a.runTrainer(ectx, r); err != nil {
		return protocol.EvalSums{}, a.trainerFailed(err)
	}
	var res EvalResult
	if err := readResult(r.plan.Result, &res); err != nil {
		return protocol.EvalSums{}, a.trainerFailed(err)
	}
	if res.Total < 0 || res.Total > math.MaxInt32 || res.Correct < 0 || res.Correct > res.Total || math.IsNaN(res.Loss) || math.IsInf(res.Loss, 0) || res.Loss < 0 {
		return protocol.EvalSums{}, a.trainerFailed(trainerErr("trainer's %s: correct %d, total %d, loss %v: need 0 <= correct <= total < 2^31 and a finite loss >= 0", resultFile, res.Correct, res.Total, res.Loss))
	}
	return protocol.EvalSums{Correct: uint32(res.Correct), Total: uint32(res.Total), LossSum: res.Loss * float64(res.Total)}, nil
}

// trainerFailed logs a trainer failure, remembers it for LastTrainerFailure
// and returns err.
func (a *Agent) trainerFailed(err error) error {
	var te *TrainerError
	if errors.As(err, &te) {
		a.log.Warn("external trainer failed", "reason", te.Reason)
		a.mu.Lock()
		a.trainerFail.reason, a.trainerFail.at = te.Reason, a.now()
		a.mu.Unlock()
	}
	return err
}

// trainerFailure is the external trainer's last failure.
type trainerFailure struct {
	reason string
	at     time.Time
}

// LastTrainerFailure returns the reason and time of the external
// trainer's last failure, or "" if it has not failed since start.
func (a *Agent) LastTrainerFailure() (string, time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.trainerFail.reason, a.trainerFail.at
}

// trainExternalRound is a training round of an external model: the
// external trainer trains, and its checked result goes through the same
// submitUpdate path as the engine's (delta, clipping, DP, masking).
//
// start (stored in data) is not held while the trainer's weights are:
// once its weights file is written it is left to the collector, and the
// update is computed against data as it streams from disk, so the round
// holds one model-sized vector at a time.
func (a *Agent) trainExternalRound(ctx context.Context, c conn, st *roundState, plan *protocol.RoundPlan, cfg *secagg.Config, pid uint32, data modelData, start *tensor.Model) error {
	dim := start.NumParams() + protocol.UpdateMetrics
	if plan.DP.Adaptive {
		if !(plan.DP.BitScale > 0 && plan.DP.ClipNorm > 0 && cfg != nil) {
			return fmt.Errorf("adaptive clipping needs secure aggregation, a clip norm and a positive bit scale (got %v, %v)", plan.DP.ClipNorm, plan.DP.BitScale)
		}
		dim++
	}
	if cfg != nil && cfg.Dim != cfg.Quantizer.EncodedLen(dim) {
		return fmt.Errorf("secagg dimension %d does not fit model %d (%d parameters)", cfg.Dim, plan.ModelVersion, start.NumParams())
	}
	trained, n, stats, err := a.trainExternal(ctx, st, plan, start)
	if err != nil {
		return err
	}
	if err := a.st.files.subtract(data, trained.Params, plan.ModelHash); err != nil {
		return err
	}
	return a.submitUpdate(ctx, c, st, plan, cfg, pid, nil, trained, n, stats)
}
