package coordinator

import (
	"testing"

	"github.com/fedge/fedge/coordinator/api"
)

func TestDataWantFits(t *testing.T) {
	mnist := &api.AgentStatus{DataKind: "mnist", Features: 784, Classes: 10}
	idx := &api.AgentStatus{DataKind: "idx", Features: 784, Classes: 10}
	csv3 := &api.AgentStatus{DataKind: "csv", Features: 4, Classes: 3}
	none := &api.AgentStatus{}
	tests := []struct {
		name string
		want dataWant
		st   *api.AgentStatus
		fits bool
	}{
		{"2nn on mnist", dataWant{features: 784, classes: 10}, mnist, true},
		{"gcn on mnist", dataWant{features: 1433, classes: 7}, mnist, false},
		{"more outputs than classes", dataWant{features: 4, classes: 5}, csv3, true},
		{"fewer outputs than classes", dataWant{features: 784, classes: 5}, mnist, false},
		{"kind named and held", dataWant{kind: "csv"}, csv3, true},
		{"kind named, other held", dataWant{kind: "csv"}, mnist, false},
		{"mnist as idx files", dataWant{kind: "mnist", features: 784, classes: 10}, idx, true},
		{"engine model, no data", dataWant{features: 784, classes: 10}, none, false},
		{"external model, no data", dataWant{}, none, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.want.fits(tt.st); got != tt.fits {
				t.Errorf("fits = %v, want %v", got, tt.fits)
			}
		})
	}
}

func TestDescribeHeld(t *testing.T) {
	tests := []struct {
		held map[string]int
		n    int
		want string
	}{
		{map[string]int{"784 features and 10 classes": 3}, 3, "the 3 connected agents hold 784 features and 10 classes"},
		{map[string]int{"784 features and 10 classes": 1}, 1, "the connected agent holds 784 features and 10 classes"},
		{map[string]int{"784 features and 10 classes": 2, "no local data": 1}, 3,
			"the 3 connected agents hold 784 features and 10 classes (2 agents); no local data (1 agent)"},
	}
	for _, tt := range tests {
		if got := describeHeld(tt.held, tt.n); got != tt.want {
			t.Errorf("describeHeld(%v) = %q, want %q", tt.held, got, tt.want)
		}
	}
}
