package coordinator

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/tensor"
	"github.com/fedge/fedge/tensor/data"
)

func TestCheckColumns(t *testing.T) {
	dense := tensor.Spec{Input: []int{1}, Layers: []tensor.LayerSpec{{Type: tensor.LayerDense, Units: 2}}}
	conv, _ := tensor.NamedSpec(tensor.SpecCNN)
	external, err := tensor.ExternalSpec("x", []tensor.ExternalTensor{{Name: "w", Shape: []int{2}}})
	if err != nil {
		t.Fatal(err)
	}
	cols := []data.ColumnRule{{Name: "age"}, {Name: "color", Categories: []string{"r", "b"}, Unknown: "other"}}
	tests := []struct {
		name string
		kind string
		ts   tensor.Spec
		ok   bool
	}{
		{"dense csv", "csv", dense, true},
		{"no kind", "", dense, true},
		{"images", "mnist", dense, false},
		{"cnn", "csv", conv, false},
		{"external", "csv", external, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := &api.JobSpec{Data: api.DataSchema{Kind: tt.kind, Columns: cols}}
			err := checkColumns(spec, tt.ts)
			if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrInvalidJob)) {
				t.Fatalf("err %v, want ok=%v", err, tt.ok)
			}
		})
	}
	bad := api.JobSpec{Model: "x", Data: api.DataSchema{Columns: []data.ColumnRule{{Name: "a", Missing: "guess"}}}}
	if err := bad.Normalize(); !errors.Is(err, api.ErrInvalidJob) {
		t.Fatalf("Normalize accepted a bad rule: %v", err)
	}
	bad = api.JobSpec{InitModel: 3, Data: api.DataSchema{Columns: cols}}
	if err := bad.Normalize(); !errors.Is(err, api.ErrInvalidJob) {
		t.Fatalf("Normalize accepted columns with init_model: %v", err)
	}
}

// TestPrepRoundSetsJobQuality: a committed apply-phase preparation round
// puts the federation's data quality in the job's record; other phases
// and failed rounds do not.
func TestPrepRoundSetsJobQuality(t *testing.T) {
	s := newState()
	s.Jobs["j"] = &JobRecord{ID: "j", State: JobRunning, Spec: JobSpec{Rounds: 1}}
	run := func(phase float64, state string) {
		t.Helper()
		hdr, _ := json.Marshal(RoundRecord{Job: "j", Kind: RoundPrep})
		id := applyRoundStart(s, hdr)
		r := RoundRecord{ID: id.(uint64), State: state, Metrics: map[string]float64{"phase": phase, "survivors": 3, "rows": 90, "kept": 80, "dropped": 10, "filled": 7, "clipped": 2, "unknown": 1}}
		if err := endRound(s, &r); err != nil {
			t.Fatal(err)
		}
	}
	run(data.PrepProfile, RoundCommitted)
	run(data.PrepApply, RoundFailed)
	if s.Jobs["j"].Data != nil {
		t.Fatalf("quality from a profile or failed round: %+v", s.Jobs["j"].Data)
	}
	run(data.PrepApply, RoundCommitted)
	got := apiJob(s.Jobs["j"]).Data
	want := api.DataQuality{Round: 3, Agents: 3, Rows: 90, Kept: 80, Dropped: 10, Filled: 7, Clipped: 2, Unknown: 1}
	if got == nil || *got != want {
		t.Fatalf("job data quality %+v, want %+v", got, want)
	}
}
