package coordinator

import (
	"errors"
	"fmt"
	"testing"
)

func TestParseGate(t *testing.T) {
	tests := []struct {
		expr string
		want string
		ok   bool
	}{
		{"accuracy>=baseline-0.5", "accuracy>=baseline-0.5", true},
		{" accuracy >= baseline ", "accuracy>=baseline", true},
		{"loss<=baseline+0.01", "loss<=baseline+0.01", true},
		{"accuracy>95", "accuracy>95", true},
		{"precision>=1", "", false},
		{"accuracy=>1", "", false},
		{"accuracy>=baselineX", "", false},
		{"accuracy>=", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			g, err := ParseGate(tt.expr)
			if (err == nil) != tt.ok {
				t.Fatalf("err %v", err)
			}
			if err != nil {
				if !errors.Is(err, ErrBadGate) {
					t.Fatalf("not ErrBadGate: %v", err)
				}
				return
			}
			if g.String() != tt.want {
				t.Fatalf("got %s want %s", g, tt.want)
			}
		})
	}
}

func TestGatePass(t *testing.T) {
	g, _ := ParseGate("accuracy>=baseline-0.5")
	good := NewEvidence(5, EvalSums{Correct: 958, Total: 1000}, EvalSums{Correct: 960, Total: 1000})
	bad := NewEvidence(5, EvalSums{Correct: 100, Total: 1000}, EvalSums{Correct: 960, Total: 1000})
	if ok, _, _ := g.Pass(good); !ok {
		t.Fatal("95.8 vs 96.0-0.5 should pass")
	}
	if ok, got, want := g.Pass(bad); ok || got != 10 || want != 95.5 {
		t.Fatalf("bad candidate passed: %v %v %v", ok, got, want)
	}
	l, _ := ParseGate("loss<=baseline")
	e := NewEvidence(3, EvalSums{Correct: 1, Total: 10, LossSum: 5}, EvalSums{Correct: 1, Total: 10, LossSum: 6})
	if ok, _, _ := l.Pass(e); !ok {
		t.Fatal("lower loss should pass")
	}
}

func TestTargetVersionAndCohorts(t *testing.T) {
	s := newState()
	s.Stable = 1
	s.Models[1] = &ModelRecord{Version: 1, Blob: []byte{1}}
	s.Models[2] = &ModelRecord{Version: 2, Blob: []byte{2}}
	for i := 0; i < 1000; i++ {
		id := fmt.Sprintf("ag-%04d", i)
		s.Agents[id] = &AgentRecord{ID: id, Labels: map[string]string{"tier": map[bool]string{true: "canary", false: "prod"}[i%10 == 0]}}
	}
	cohorts, err := ParseCohorts("canary[tier=canary]=100%,half=50%,all=100%")
	if err != nil {
		t.Fatal(err)
	}
	r := &RolloutRecord{ID: "r1", Model: 2, Baseline: 1, Cohorts: cohorts, State: RolloutRunning}
	s.Rollouts["r1"] = r
	count := func() (n int) {
		for id := range s.Agents {
			if s.TargetVersion(id) == 2 {
				n++
			}
		}
		return n
	}
	if n := count(); n != 100 {
		t.Fatalf("canary stage serves candidate to %d agents, want the 100 canaries", n)
	}
	r.Stage = 1
	if n := count(); n < 500 || n > 600 {
		t.Fatalf("half stage: %d agents (want ~100 + half of 900)", n)
	}
	// Assignment is stable: the same agents every time.
	first := map[string]bool{}
	for id := range s.Agents {
		first[id] = s.TargetVersion(id) == 2
	}
	for id := range s.Agents {
		if (s.TargetVersion(id) == 2) != first[id] {
			t.Fatal("cohort assignment flapped")
		}
	}
	r.Stage = 2
	if n := count(); n != 1000 {
		t.Fatalf("all stage: %d", n)
	}
	r.State = RolloutRolledBack
	if n := count(); n != 0 {
		t.Fatalf("after rollback %d agents serve the candidate", n)
	}
	if _, err := ParseCohorts("canary=0%"); err == nil {
		t.Fatal("0% cohort accepted")
	}
	if c, _ := ParseCohorts("5,50,100"); len(c) != 3 || c[1].Percent != 50 {
		t.Fatalf("plain percentages: %+v", c)
	}
}
