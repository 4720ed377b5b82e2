package api

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/fedge/fedge/protocol"
)

func TestJobSpecEvalEvery(t *testing.T) {
	tests := []struct {
		name       string
		spec       JobSpec
		ok         bool
		minClients int
	}{
		{"off", JobSpec{Model: "2nn"}, true, 2},
		{"default min_clients rises to the secure minimum", JobSpec{Model: "2nn", EvalEvery: 2}, true, EvalMinAgents},
		{"explicit min_clients kept", JobSpec{Model: "2nn", EvalEvery: 5, MinClients: 6}, true, 6},
		{"too few clients to hide one agent", JobSpec{Model: "2nn", EvalEvery: 2, MinClients: 2}, false, 0},
		{"negative", JobSpec{Model: "2nn", EvalEvery: -1}, false, 0},
		{"beyond the job's rounds", JobSpec{Model: "2nn", Rounds: 4, EvalEvery: 5}, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.spec.Normalize()
			if tt.ok != (err == nil) || (err != nil && !errors.Is(err, ErrInvalidJob)) {
				t.Fatalf("Normalize: %v, want ok %v", err, tt.ok)
			}
			if tt.ok && tt.spec.MinClients != tt.minClients {
				t.Errorf("min_clients %d, want %d", tt.spec.MinClients, tt.minClients)
			}
		})
	}
}

// TestDeadlinesJSON: a job's deadlines read as duration strings or
// seconds and write as strings, with the type agents' configuration files
// use (protocol.Duration).
func TestDeadlinesJSON(t *testing.T) {
	var _ protocol.Duration = Duration(0) // the same type, not a copy
	var d Deadlines
	if err := json.Unmarshal([]byte(`{"train": "2m", "stage": 30}`), &d); err != nil {
		t.Fatal(err)
	}
	if time.Duration(d.Train) != 2*time.Minute || time.Duration(d.Stage) != 30*time.Second {
		t.Fatalf("deadlines %+v", d)
	}
	b, err := json.Marshal(d)
	if err != nil || string(b) != `{"train":"2m0s","stage":"30s"}` {
		t.Fatalf("marshal: %s %v", b, err)
	}
}
