package coordinator

import (
	"fmt"
	"testing"

	"github.com/fedge/fedge/coordinator/api"
)

func TestTargetVersionAndCohorts(t *testing.T) {
	s := newState()
	s.Stable = 1
	s.Models[1] = &ModelRecord{Version: 1, BlobHash: testBlobHash(1)}
	s.Models[2] = &ModelRecord{Version: 2, BlobHash: testBlobHash(2)}
	for i := 0; i < 1000; i++ {
		id := fmt.Sprintf("ag-%04d", i)
		s.Agents[id] = &AgentRecord{ID: id, Labels: map[string]string{"tier": map[bool]string{true: "canary", false: "prod"}[i%10 == 0]}}
	}
	cohorts, err := api.ParseCohorts("canary[tier=canary]=100%,half=50%,all=100%")
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
	if _, err := api.ParseCohorts("canary=0%"); err == nil {
		t.Fatal("0% cohort accepted")
	}
	if c, _ := api.ParseCohorts("5,50,100"); len(c) != 3 || c[1].Percent != 50 {
		t.Fatalf("plain percentages: %+v", c)
	}
}
