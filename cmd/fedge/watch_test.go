package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/internal/wait"
)

// writeIDX writes n random 28x28 images whose label is the image's
// brightest quadrant (so a linear model can learn something) as IDX files
// and returns their paths.
func writeIDX(t *testing.T, dir string, n int, seed uint64) (images, labels string) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 1))
	img := binary.BigEndian.AppendUint32(nil, 0x803)
	img = binary.BigEndian.AppendUint32(img, uint32(n))
	img = binary.BigEndian.AppendUint32(img, 28)
	img = binary.BigEndian.AppendUint32(img, 28)
	lab := binary.BigEndian.AppendUint32(nil, 0x801)
	lab = binary.BigEndian.AppendUint32(lab, uint32(n))
	for i := 0; i < n; i++ {
		q := r.IntN(4)
		for y := 0; y < 28; y++ {
			for x := 0; x < 28; x++ {
				v := byte(r.IntN(64))
				if (y/14)*2+x/14 == q {
					v += 160
				}
				img = append(img, v)
			}
		}
		lab = append(lab, byte(q))
	}
	images, labels = filepath.Join(dir, "images.idx"), filepath.Join(dir, "labels.idx")
	if err := os.WriteFile(images, img, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(labels, lab, 0o600); err != nil {
		t.Fatal(err)
	}
	return images, labels
}

// startAgent enrolls and runs `fedge agent` on a small IDX dataset until
// the test ends.
func (tc *testCluster) startAgent(t *testing.T, seed uint64) {
	t.Helper()
	var tok api.TokenResponse
	tc.okJSON(t, &tok, "tokens", "create")
	dir := t.TempDir()
	images, labels := writeIDX(t, dir, 60, seed)
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- runAgentContext(ctx, []string{
			"-coordinators", tc.addr, "-join-token", tok.Token, "-data-dir", filepath.Join(dir, "state"),
			"-dataset-kind", "idx", "-train-images", images, "-train-labels", labels,
			"-inference-listen", "", "-shutdown-timeout", "2s", "-log-level", "warn",
		}, &out, &errb)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("agent exit %d:\n%s%s", code, out.String(), errb.String())
			} else if t.Failed() {
				t.Logf("agent %d log (warnings):\n%s", seed, errb.String())
			}
		case <-time.After(15 * time.Second):
			t.Error("agent did not stop")
		}
	})
}

// waitAgents waits until n agents are enrolled and every one is connected.
func (tc *testCluster) waitAgents(t *testing.T, n int) {
	t.Helper()
	var agents []api.Agent
	connected := func() bool {
		tc.okJSON(t, &agents, "agents", "list")
		if len(agents) != n {
			return false
		}
		for _, a := range agents {
			if !a.Connected {
				return false
			}
		}
		return true
	}
	if wait.Until(context.Background(), 15*time.Second, connected) != nil {
		t.Fatalf("agents did not connect: %+v", agents)
	}
}

func TestWatchJobRounds(t *testing.T) {
	tc := startCluster(t)
	tc.startAgent(t, 1)
	tc.startAgent(t, 2)
	tc.waitAgents(t, 2)

	job := filepath.Join(t.TempDir(), "job.json")
	if err := os.WriteFile(job, []byte(`{"name": "watch", "model": "logreg", "data": {"kind": "mnist", "features": 784, "classes": 10},
		"rounds": 3, "fraction": 1, "min_clients": 2, "plan": {"epochs": 1, "batch_size": 10, "lr": 0.05},
		"deadlines": {"train": "20s", "stage": "10s", "download": "10s"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	var rec api.Job
	tc.okJSON(t, &rec, "jobs", "start", "-f", job)

	type result struct {
		code      int
		out, errs string
	}
	res := make(chan result, 1)
	go func() {
		code, out, errs := tc.admin(t, "jobs", "status", "-watch", "-interval", "200ms", rec.ID)
		res <- result{code, out, errs}
	}()
	var r result
	select {
	case r = <-res:
	case <-time.After(90 * time.Second):
		t.Fatal("jobs status -watch did not return within 90s")
	}
	if r.code != 0 {
		t.Fatalf("watch: exit %d\n%s%s", r.code, r.out, r.errs)
	}
	for i := 1; i <= 3; i++ {
		contains(t, "watch", r.out, fmt.Sprintf("round %d/3  participants 2  survivors 2  train loss ", i))
	}
	contains(t, "watch", r.out, "Job "+rec.ID+" done after 3/3 rounds")
	if n := strings.Count(r.out, "train loss"); n != 3 {
		t.Errorf("watch printed %d round lines, want 3:\n%s", n, r.out)
	}

	// The job's three committed rounds; a round that failed on the way (the
	// engine retries) must have ended, and says why.
	var all, rounds []api.Round
	tc.okJSON(t, &all, "rounds", "list", "-job", rec.ID)
	for _, r := range all {
		switch r.State {
		case api.RoundCommitted:
			rounds = append(rounds, r)
		case api.RoundFailed, api.RoundAborted:
			t.Logf("round %d (#%d) %s: %s; participants %v", r.ID, r.Number, r.State, r.Error, r.Participants)
			if r.Error == "" {
				t.Errorf("round %d %s without a reason", r.ID, r.State)
			}
		default:
			t.Errorf("round %d is %s after the job finished", r.ID, r.State)
		}
	}
	if len(rounds) != 3 {
		t.Fatalf("rounds list -job: %d committed rounds of %d", len(rounds), len(all))
	}

	// A list carries the number of participants, their IDs only when
	// asked; -after keeps the later rounds.
	for _, r := range rounds {
		if r.ParticipantCount != 2 || len(r.Participants) != 0 {
			t.Errorf("rounds list: round %d has participant_count %d and IDs %v; want 2 and none", r.ID, r.ParticipantCount, r.Participants)
		}
	}
	var withIDs, later []api.Round
	tc.okJSON(t, &withIDs, "rounds", "list", "-job", rec.ID, "-participants")
	for _, r := range withIDs {
		if r.State == api.RoundCommitted && (len(r.Participants) != 2 || r.ParticipantCount != 2) {
			t.Errorf("rounds list -participants: round %d has IDs %v (count %d); want 2", r.ID, r.Participants, r.ParticipantCount)
		}
	}
	tc.okJSON(t, &later, "rounds", "list", "-job", rec.ID, "-after", fmt.Sprint(rounds[1].ID))
	if len(later) == 0 || later[0].ID <= rounds[1].ID || later[len(later)-1].ID != all[len(all)-1].ID {
		t.Errorf("rounds list -after %d: %+v; want the rounds after it, up to %d", rounds[1].ID, later, all[len(all)-1].ID)
	}
	contains(t, "rounds list", tc.ok(t, "rounds", "list", "-limit", "1"), fmt.Sprint(rounds[2].ID), "committed")
	contains(t, "rounds show", tc.ok(t, "rounds", "show", fmt.Sprint(rounds[0].ID)), "State:", "committed", "Stages:", "invite", "train_loss=")

	// The last round's model: show, export (hash checked), pin.
	latest := version(rounds[2].ModelOut)
	contains(t, "models show", tc.ok(t, "models", "show", latest), "Hash:", "Job:", rec.ID)
	file := filepath.Join(t.TempDir(), "model.fedge")
	contains(t, "models export", tc.ok(t, "models", "export", latest, "-o", file), "verified")
	if fi, err := os.Stat(file); err != nil || fi.Size() < 7850*4 {
		t.Errorf("exported file: %v, %v", fi, err)
	}
	tc.ok(t, "models", "pin", latest)
	contains(t, "models list", tc.ok(t, "models", "list"), latest, "yes")
	contains(t, "models pin -unpin", tc.ok(t, "models", "pin", "-unpin", latest), "Unpinned "+latest)

	// A rollout whose canary is too small for the gate is refused, saying
	// what would fix it; with -force it starts and waits for the operator.
	code, _, errs := tc.admin(t, "rollout", "start", "-model", latest, "-canary", "50%", "-gate", "accuracy>=baseline-0.5")
	if code != exitUsage || !strings.Contains(errs, "a canary needs at least 3") {
		t.Fatalf("a canary of half of 3 agents: exit %d: %s", code, errs)
	}
	// Then operator decisions recorded with their author.
	out := tc.ok(t, "rollout", "start", "-model", latest, "-canary", "50%", "-force", "-gate", "accuracy>=baseline-0.5")
	contains(t, "rollout start", out, "canary=50% -> all=100%", "accuracy>=baseline-0.5")
	tc.ok(t, "rollout", "pause", "-reason", "checking")
	tc.ok(t, "rollout", "rollback")
	out = tc.ok(t, "rollout", "status")
	contains(t, "rollout status", out, "rolled_back", "pause", "operator:admin", "checking", "rollback")
}

// TestImportedTorchONNXTrains: an MLP exported by PyTorch to ONNX
// (tensor/onnx/testdata/torch_mlp.onnx, made by make_torch.py) imports
// with `fedge models import` as an engine model and trains federatedly
// from there: a job with init_model runs its rounds on two agents and
// commits versions descended from the import.
func TestImportedTorchONNXTrains(t *testing.T) {
	tc := startCluster(t)
	tc.startAgent(t, 3)
	tc.startAgent(t, 4)
	tc.waitAgents(t, 2)
	onnxFile := filepath.Join("..", "..", "tensor", "onnx", "testdata", "torch_mlp.onnx")
	v := strings.TrimSpace(tc.ok(t, "models", "import", "-q", "-f", onnxFile, "-name", "torch-mlp"))
	job := filepath.Join(t.TempDir(), "job.json")
	if err := os.WriteFile(job, []byte(`{"name": "torch", "init_model": `+v+`, "rounds": 2, "fraction": 1, "min_clients": 2,
		"plan": {"epochs": 1, "batch_size": 10, "lr": 0.05}, "deadlines": {"train": "20s", "stage": "10s", "download": "10s"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	id := strings.TrimSpace(tc.ok(t, "jobs", "start", "-q", "-f", job))
	out := tc.ok(t, "jobs", "status", "-watch", "-interval", "200ms", id)
	contains(t, "watch", out, "done after 2/2 rounds")
	var models []api.Model
	tc.okJSON(t, &models, "models", "list")
	parents := map[uint64]uint64{}
	for _, m := range models {
		parents[m.Version] = m.Parent
	}
	imported, _ := strconv.ParseUint(v, 10, 64)
	descended := 0
	for _, m := range models {
		for p := m.Parent; p != 0; p = parents[p] {
			if p == imported {
				descended++
				break
			}
		}
	}
	if descended != 2 {
		t.Fatalf("%d versions descend from the imported v%d, want 2: %+v", descended, imported, models)
	}
}

// TestWatchJobHeldOutAccuracy: a job with eval_every 2 on three agents;
// `jobs status -watch` prints the securely aggregated held-out accuracy
// after rounds 2 and 4, each right after its training round, and `jobs
// status` shows the last one.
func TestWatchJobHeldOutAccuracy(t *testing.T) {
	tc := startCluster(t)
	for seed := uint64(5); seed < 8; seed++ {
		tc.startAgent(t, seed)
	}
	tc.waitAgents(t, 3)
	job := filepath.Join(t.TempDir(), "job.json")
	if err := os.WriteFile(job, []byte(`{"name": "eval", "model": "logreg", "data": {"kind": "mnist", "features": 784, "classes": 10},
		"rounds": 4, "eval_every": 2, "fraction": 1, "plan": {"epochs": 1, "batch_size": 10, "lr": 0.05},
		"deadlines": {"train": "20s", "stage": "10s", "download": "10s"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	id := strings.TrimSpace(tc.ok(t, "jobs", "start", "-q", "-f", job))
	out := tc.ok(t, "jobs", "status", "-watch", "-interval", "200ms", id)

	// 60 images per agent, 10% held out: 18 examples on 3 agents. An
	// evaluation may fail while an agent still finishes the training
	// round (the engine retries it); the committed one follows its
	// training round.
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(l, "eval ") && strings.Contains(l, " failed: "):
			t.Logf("retried: %s", l)
		case strings.HasPrefix(l, "round ") || strings.HasPrefix(l, "eval "):
			lines = append(lines, l)
		}
	}
	var evals []string
	for i, l := range lines {
		if !strings.HasPrefix(l, "eval ") {
			continue
		}
		evals = append(evals, l)
		if i == 0 || !strings.HasPrefix(lines[i-1], fmt.Sprintf("round %d/4 ", 2*len(evals))) {
			t.Errorf("%q does not follow training round %d/4:\n%s", l, 2*len(evals), out)
		}
	}
	if len(evals) != 2 {
		t.Fatalf("watch printed %d evaluation lines, want 2 (after rounds 2 and 4):\n%s", len(evals), out)
	}
	for i, l := range evals {
		contains(t, "watch", l, fmt.Sprintf("eval after round %d: held-out accuracy ", 2*(i+1)), "% over 18 examples on 3 agents, loss ")
	}
	contains(t, "watch", out, "done after 4/4 rounds", "; held-out accuracy ")

	var j api.Job
	tc.okJSON(t, &j, "jobs", "status", id)
	if e := j.Eval; e == nil || e.AfterRound != 4 || e.Examples != 18 || e.Agents != 3 || !(e.Accuracy >= 0 && e.Accuracy <= 1) {
		t.Fatalf("job's last evaluation %+v", j.Eval)
	}
	contains(t, "jobs status", tc.ok(t, "jobs", "status", id), "Held-out evaluation", "every 2 rounds; after round 4: accuracy ", "over 18 examples on 3 agents")
}
