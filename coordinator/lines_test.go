package coordinator

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"
)

// Two jobs with two model names make two lines: each has its own stable
// version and its own rollout, and agents are told the target of each.
func TestModelLines(t *testing.T) {
	h := newHarness(t)
	populate(h) // job1 commits versions 1..3 of an unnamed model: the default line ""
	spec := JobSpec{Model: "logreg", Rounds: 2}
	if err := spec.Normalize(); err != nil {
		t.Fatal(err)
	}
	h.ok(cmdJobCreate, JobRecord{ID: "job2", Spec: spec, CreatedAt: t0}, nil)
	commit := func(name string, b byte) uint64 {
		return h.ok(cmdModelCommit, modelCommitCmd{Model: ModelRecord{Hash: "h", Job: "job2", CreatedAt: t0, Name: name}},
			bytes.Repeat([]byte{b}, 10)).(uint64)
	}
	v4 := commit("logreg", 4) // the line's first version: its stable one
	v5 := commit("logreg", 5)
	h.f.Read(func(s *State) {
		if s.Stable != 1 || s.LineStable("") != 1 || s.LineStable("logreg") != v4 {
			t.Fatalf("stable %d, lines %v: want the default line at 1 and logreg at %d", s.Stable, s.Lines, v4)
		}
		want := []LineTarget{{"", 1}, {"logreg", v4}}
		if got := s.TargetVersions("ag-1"); !reflect.DeepEqual(got, want) {
			t.Fatalf("targets %v, want %v", got, want)
		}
	})
	all := []Cohort{{Name: "all", Percent: 100}}
	h.ok(cmdRolloutCreate, RolloutRecord{ID: "r-default", Model: 3, Cohorts: all, CreatedAt: t0}, nil)
	// A rollout of another line runs beside it; a second one on the same
	// line is refused.
	h.ok(cmdRolloutCreate, RolloutRecord{ID: "r-logreg", Model: v5, Cohorts: all, CreatedAt: t0}, nil)
	if err, _ := h.apply(cmdRolloutCreate, RolloutRecord{ID: "r-logreg2", Model: v5, Cohorts: all, CreatedAt: t0}, nil).(error); !errors.Is(err, ErrConflict) {
		t.Fatalf("second rollout of one line: %v, want ErrConflict", err)
	}
	h.f.Read(func(s *State) {
		if r := s.Rollouts["r-logreg"]; r.Baseline != v4 || r.Line != "logreg" {
			t.Fatalf("logreg rollout %+v: want baseline %d on line logreg", r, v4)
		}
		want := []LineTarget{{"", 3}, {"logreg", v5}}
		if got := s.TargetVersions("ag-1"); !reflect.DeepEqual(got, want) {
			t.Fatalf("targets during rollouts %v, want %v", got, want)
		}
	})
	h.ok(cmdRolloutDecide, decideCmd{ID: "r-logreg", Decision: Decision{Stage: 0, Action: "advance", By: "gate", At: t0.Add(time.Minute)}}, nil)
	h.ok(cmdRolloutDecide, decideCmd{ID: "r-default", Decision: Decision{Stage: 0, Action: "rollback", By: "gate", At: t0.Add(time.Minute)}}, nil)
	h.f.Read(func(s *State) {
		if s.Stable != 1 || s.LineStable("logreg") != v5 || s.TargetVersion("ag-1") != 1 {
			t.Fatalf("after promote and rollback: stable %d, lines %v", s.Stable, s.Lines)
		}
	})
	// The lines survive a snapshot.
	f2 := NewFSM(nil)
	if err := f2.Restore(nopCloser{bytes.NewReader(snapshotBytes(t, h.f))}); err != nil {
		t.Fatal(err)
	}
	f2.Read(func(s *State) {
		if s.LineStable("logreg") != v5 {
			t.Fatalf("restored lines %v", s.Lines)
		}
	})
}
