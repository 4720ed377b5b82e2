package coordinator

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/protocol"
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

// TestKeepReportClips: a report's strings are kept at most maxReportText
// bytes, valid UTF-8, whatever a foreign agent sends.
func TestKeepReportClips(t *testing.T) {
	long := strings.Repeat("é", maxReportText)
	c := &agentConn{id: "a"}
	at := time.Unix(1_760_000_000, 0)
	c.keepReport(&protocol.AgentStatus{DataKind: long, TrainerFailure: long, Features: 4,
		Events: []protocol.StatusEvent{{Level: "warn", Message: long}}}, at)
	r := c.report.Load()
	st := r.status
	for _, s := range []string{st.DataKind, st.TrainerFailure, st.Events[0].Message} {
		if len(s) > maxReportText || !utf8.ValidString(s) || !strings.HasPrefix(long, s) {
			t.Errorf("kept %d bytes (valid UTF-8 %v)", len(s), utf8.ValidString(s))
		}
	}
	if st.Features != 4 || st.Events[0].Level != "warn" || !r.at.Equal(at) {
		t.Errorf("kept report %+v at %v", st, r.at)
	}
}
