package sim

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fedge/fedge/agent"
	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/internal/testutil"
)

func smallRun(t *testing.T, seed uint64) *Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := Run(ctx, Options{
		Agents: 6, Seed: seed, Partition: PartitionDirichlet, Workers: 2, PerSocket: 4,
		Dataset: agent.DatasetConfig{Kind: agent.DatasetMNIST, Path: testutil.MNISTDir(t)},
		Jobs: []api.JobSpec{{
			Name: "sim", Model: "logreg", Rounds: 2, Fraction: 1, MinClients: 6,
			Plan:   api.LocalPlan{Epochs: 1, BatchSize: 50, LR: 0.1},
			SecAgg: api.SecAggSpec{Enabled: true},
			DP:     api.DPSpec{Enabled: true, Clip: 5, NoiseMultiplier: 0.05},
		}},
		LocalHeartbeat: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// The same seed gives the same rounds: agents, test accuracy and loss,
// training loss and ε, round by round, over real QUIC and Raft with
// SecAgg+ and distributed DP noise.
func TestRunRepeatsForASeed(t *testing.T) {
	ra, rb, rc := smallRun(t, 7), smallRun(t, 7), smallRun(t, 8)
	a, b, c := ra.Jobs[0], rb.Jobs[0], rc.Jobs[0]
	if len(a.Rounds) != 2 || len(b.Rounds) != 2 || len(c.Rounds) != 2 {
		t.Fatalf("rounds: %d, %d and %d, want 2 each", len(a.Rounds), len(b.Rounds), len(c.Rounds))
	}
	same := func(x, y RoundLine) bool {
		return x.Round == y.Round && x.Participants == y.Participants && x.TestAccuracy == y.TestAccuracy &&
			x.TestLoss == y.TestLoss && x.TrainLoss == y.TrainLoss && x.Epsilon == y.Epsilon
	}
	for i := range a.Rounds {
		if !same(a.Rounds[i], b.Rounds[i]) {
			t.Errorf("round %d differs for one seed:\n%+v\n%+v", i+1, a.Rounds[i], b.Rounds[i])
		}
		if a.Rounds[i].Participants != 6 {
			t.Errorf("round %d: %d participants, want 6", i+1, a.Rounds[i].Participants)
		}
	}
	// Agents train when they mask and hold an upload slot until the
	// masked input is written: the fleet holds at most 2 × workers
	// updates, not one for every agent of the round through the key
	// stages.
	if ra.PeakUpdates < 1 || ra.PeakUpdates > 4 {
		t.Errorf("the fleet held %d trained updates at once; want 1 to 4 (twice its workers)", ra.PeakUpdates)
	}
	if a.Rounds[1].TestAccuracy < 0.7 {
		t.Errorf("test accuracy %.3f after 2 rounds: the fleet did not learn", a.Rounds[1].TestAccuracy)
	}
	if a.Rounds[0].Epsilon <= 0 {
		t.Errorf("ε %v: the accountant was not charged", a.Rounds[0].Epsilon)
	}
	if same(a.Rounds[1], c.Rounds[1]) {
		t.Errorf("seeds 7 and 8 gave the same round: %+v", c.Rounds[1])
	}
	dir := t.TempDir()
	if err := WriteCSV(filepath.Join(dir, "rounds.csv"), ra.Jobs); err != nil {
		t.Fatal(err)
	}
	if err := WritePlot(filepath.Join(dir, "rounds.png"), "test", ra.Jobs); err != nil {
		t.Fatal(err)
	}
	if err := WriteEpsilonPlot(filepath.Join(dir, "eps.png"), "test", []Series{{Name: "a", Jobs: ra.Jobs}, {Name: "c", Jobs: rc.Jobs, EveryRound: true}}, 0.9); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"rounds.csv", "rounds.png", "eps.png"} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Size() < 100 {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestOptionsRejected(t *testing.T) {
	tests := []struct {
		name string
		o    Options
	}{
		{"negative agents", Options{Agents: -1, Jobs: []api.JobSpec{{Rounds: 1}}}},
		{"unknown partition", Options{Partition: "zipf", Jobs: []api.JobSpec{{Rounds: 1}}}},
		{"no job", Options{}},
		{"no rounds", Options{Jobs: []api.JobSpec{{Rounds: 1}, {}}}},
		{"test fraction", Options{TestFraction: 1.5, Jobs: []api.JobSpec{{Rounds: 1}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Run(context.Background(), tt.o); !errors.Is(err, ErrOptions) {
				t.Errorf("got %v, want ErrOptions", err)
			}
		})
	}
}
