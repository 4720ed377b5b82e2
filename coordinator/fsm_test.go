package coordinator

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

var t0 = time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)

type fsmHarness struct {
	t     testing.TB
	f     *FSM
	index uint64
}

func newHarness(t testing.TB) *fsmHarness {
	return &fsmHarness{t: t, f: NewFSM(nil)}
}

// apply encodes and applies one command, returning the FSM's response.
func (h *fsmHarness) apply(c cmdType, hdr any, payload []byte) any {
	h.t.Helper()
	b, err := encodeEntry(c, hdr, payload)
	if err != nil {
		h.t.Fatal(err)
	}
	h.index++
	return h.f.Apply(&raft.Log{Index: h.index, Type: raft.LogCommand, Data: b})
}

func (h *fsmHarness) ok(c cmdType, hdr any, payload []byte) any {
	h.t.Helper()
	res := h.apply(c, hdr, payload)
	if err, isErr := res.(error); isErr {
		h.t.Fatalf("apply %d: %v", c, err)
	}
	return res
}

// populate drives a harness through a representative life of a cluster.
func populate(h *fsmHarness) {
	h.ok(cmdBootstrap, bootstrapCmd{ClusterName: "c1", CA: []byte("sealed-ca"), KeepModels: 1}, nil)
	h.ok(cmdTokenCreate, TokenRecord{ID: "tok1", Record: []byte{1, 2, 3}, Expiry: t0.Add(time.Hour), Labels: map[string]string{"region": "eu"}}, nil)
	h.ok(cmdAgentEnroll, enrollCmd{TokenID: "tok1", Agent: AgentRecord{ID: "ag-1", CertSerial: "s1", EnrolledAt: t0, Labels: map[string]string{"tier": "canary"}}}, nil)
	spec := JobSpec{Model: "2nn", Rounds: 3}
	if err := spec.Normalize(); err != nil {
		h.t.Fatal(err)
	}
	h.ok(cmdJobCreate, JobRecord{ID: "job1", Spec: spec, CreatedAt: t0}, nil)
	for i := 1; i <= 3; i++ {
		id := h.ok(cmdRoundStart, RoundRecord{Job: "job1", Kind: RoundTrain, Number: i, Term: 1, StartedAt: t0}, nil).(uint64)
		h.ok(cmdModelCommit, modelCommitCmd{
			Model: ModelRecord{Hash: "h", Job: "job1", CreatedAt: t0},
			Round: &RoundRecord{ID: id, State: RoundCommitted, EndedAt: t0.Add(time.Minute)},
		}, bytes.Repeat([]byte{byte(i)}, 100))
	}
}

func TestFSMLifecycle(t *testing.T) {
	h := newHarness(t)
	populate(h)
	h.f.Read(func(s *State) {
		a := s.Agents["ag-1"]
		if a == nil || a.Labels["region"] != "eu" || a.Labels["tier"] != "canary" {
			t.Fatalf("agent labels not merged from token and agent: %+v", a)
		}
		if !s.Tokens["tok1"].Used {
			t.Fatal("token not consumed")
		}
		j := s.Jobs["job1"]
		if j.RoundsDone != 3 || j.State != JobDone || j.Model != 3 {
			t.Fatalf("job progress %+v", j)
		}
		if s.Stable != 1 {
			t.Fatalf("first model should become stable, stable=%d", s.Stable)
		}
		// Retention keeps the newest + stable (1): version 2's blob is dropped.
		if s.Models[2].held() || !s.Models[1].held() || !s.Models[3].held() {
			t.Fatalf("retention kept wrong blobs: 1:%v 2:%v 3:%v", s.Models[1].held(), s.Models[2].held(), s.Models[3].held())
		}
		if s.Rounds[1].ModelOut != 1 || s.Rounds[1].State != RoundCommitted {
			t.Fatalf("round record %+v", s.Rounds[1])
		}
	})
}

func TestFSMRejects(t *testing.T) {
	h := newHarness(t)
	populate(h)
	tests := []struct {
		name string
		cmd  cmdType
		hdr  any
		want error
	}{
		{"token reuse", cmdAgentEnroll, enrollCmd{TokenID: "tok1", Agent: AgentRecord{ID: "ag-2", EnrolledAt: t0}}, ErrTokenUsed},
		{"unknown token", cmdAgentEnroll, enrollCmd{TokenID: "nope", Agent: AgentRecord{ID: "ag-2"}}, ErrNotFound},
		{"second bootstrap", cmdBootstrap, bootstrapCmd{ClusterName: "x", CA: []byte("y")}, ErrExists},
		{"pin dropped model", cmdModelPin, pinCmd{Version: 2, Pinned: true}, ErrConflict},
		{"round of done job", cmdRoundStart, RoundRecord{Job: "job1", Kind: RoundTrain}, ErrConflict},
		{"rollout of unknown model", cmdRolloutCreate, RolloutRecord{ID: "r", Model: 99, Cohorts: []Cohort{{Percent: 5}}}, ErrNotFound},
		{"bad job state", cmdJobUpdate, jobUpdateCmd{ID: "job1", State: "dancing"}, ErrBadEntry},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := h.apply(tt.cmd, tt.hdr, nil)
			err, _ := res.(error)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", res, tt.want)
			}
		})
	}
	h.ok(cmdTokenCreate, TokenRecord{ID: "tok2", Record: []byte{1}, Expiry: t0}, nil)
	if err, _ := h.apply(cmdAgentEnroll, enrollCmd{TokenID: "tok2", Agent: AgentRecord{ID: "ag-3", EnrolledAt: t0}}, nil).(error); !errors.Is(err, ErrTokenExpired) {
		t.Fatalf("expired token: %v", err)
	}
	if err, _ := h.apply(cmdType(77), struct{}{}, nil).(error); !errors.Is(err, ErrUnknownEntry) {
		t.Fatalf("unknown mandatory entry: %v", err)
	}
	if res := h.apply(cmdType(77)|optionalCmd, struct{}{}, nil); res != nil {
		t.Fatalf("unknown optional entry should be skipped, got %v", res)
	}
}

func TestRolloutDecisions(t *testing.T) {
	h := newHarness(t)
	populate(h)
	h.ok(cmdModelPin, pinCmd{Version: 3, Pinned: true}, nil)
	cohorts := []Cohort{{Name: "canary", Percent: 10}, {Name: "all", Percent: 100}}
	h.ok(cmdRolloutCreate, RolloutRecord{ID: "r1", Model: 3, Cohorts: cohorts, Gate: "accuracy>=baseline-0.5", CreatedAt: t0}, nil)
	if err, _ := h.apply(cmdRolloutCreate, RolloutRecord{ID: "r2", Model: 3, Cohorts: cohorts}, nil).(error); !errors.Is(err, ErrConflict) {
		t.Fatalf("second concurrent rollout: %v", err)
	}
	h.ok(cmdRolloutDecide, decideCmd{ID: "r1", Decision: Decision{Stage: 0, Action: "advance", By: "gate", At: t0}}, nil)
	if err, _ := h.apply(cmdRolloutDecide, decideCmd{ID: "r1", Decision: Decision{Stage: 0, Action: "advance"}}, nil).(error); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale stage decision: %v", err)
	}
	h.ok(cmdRolloutDecide, decideCmd{ID: "r1", Decision: Decision{Stage: 1, Action: "rollback", By: "gate", At: t0}}, nil)
	h.f.Read(func(s *State) {
		r := s.Rollouts["r1"]
		if r.State != RolloutRolledBack || s.Stable != 1 || len(r.Decisions) != 2 {
			t.Fatalf("rollout %+v stable %d", r, s.Stable)
		}
	})
}

func TestAbortRounds(t *testing.T) {
	h := newHarness(t)
	populate(h)
	h.ok(cmdJobUpdate, jobUpdateCmd{ID: "job1", State: JobDone}, nil)
	spec := JobSpec{Model: "2nn"}
	_ = spec.Normalize()
	h.ok(cmdJobCreate, JobRecord{ID: "job2", Spec: spec}, nil)
	old := h.ok(cmdRoundStart, RoundRecord{Job: "job2", Kind: RoundTrain, Term: 3}, nil).(uint64)
	cur := h.ok(cmdRoundStart, RoundRecord{Job: "job2", Kind: RoundTrain, Term: 4}, nil).(uint64)
	if n := h.ok(cmdAbortRounds, abortCmd{Term: 4, At: t0, Reason: "leader changed"}, nil).(int); n != 1 {
		t.Fatalf("aborted %d rounds, want 1", n)
	}
	h.f.Read(func(s *State) {
		if s.Rounds[old].State != RoundAborted || s.Rounds[cur].State != RoundRunning {
			t.Fatalf("old %s cur %s", s.Rounds[old].State, s.Rounds[cur].State)
		}
	})
}

func snapshotBytes(t *testing.T, f *FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := snap.(*fsmSnapshot).write(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestSnapshotRestoreAndDeterminism(t *testing.T) {
	a, b := newHarness(t), newHarness(t)
	populate(a)
	populate(b)
	sa, sb := snapshotBytes(t, a.f), snapshotBytes(t, b.f)
	if !bytes.Equal(sa, sb) {
		t.Fatal("two FSMs fed the same log differ")
	}
	r := NewFSM(nil)
	if err := r.Restore(nopCloser{bytes.NewReader(sa)}); err != nil {
		t.Fatal(err)
	}
	if got := snapshotBytes(t, r); !bytes.Equal(got, sa) {
		t.Fatal("restored state differs from the snapshot")
	}
	// The snapshot names the blobs; the restoring node's store holds them
	// (here: it shares the writer's).
	r = NewFSMWithBlobs(nil, a.f.blobs)
	if err := r.Restore(nopCloser{bytes.NewReader(sa)}); err != nil {
		t.Fatal(err)
	}
	if f, err := r.ModelFile(3); err != nil || string(f) != string(bytes.Repeat([]byte{3}, 100)) {
		t.Fatalf("blob not restored: %v", err)
	}
	// Corruption anywhere is detected.
	for _, i := range []int{0, 9, len(sa) / 2, len(sa) - 1} {
		bad := append([]byte(nil), sa...)
		bad[i] ^= 0x40
		if err := NewFSM(nil).Restore(nopCloser{bytes.NewReader(bad)}); !errors.Is(err, ErrBadSnapshot) {
			t.Fatalf("flip at %d: %v", i, err)
		}
	}
	if err := NewFSM(nil).Restore(nopCloser{bytes.NewReader(sa[:len(sa)/2])}); !errors.Is(err, ErrBadSnapshot) {
		t.Fatalf("truncated snapshot: %v", err)
	}
}

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }

func FuzzFSMApply(f *testing.F) {
	for _, c := range []struct {
		t   cmdType
		hdr any
	}{
		{cmdBootstrap, bootstrapCmd{ClusterName: "c", CA: []byte("x")}},
		{cmdTokenCreate, TokenRecord{ID: "t", Record: []byte{1}, Expiry: t0}},
		{cmdModelCommit, modelCommitCmd{Model: ModelRecord{Hash: "h"}}},
		{cmdRolloutDecide, decideCmd{ID: "r"}},
		{cmdTokenRevoke, tokenRevokeCmd{ID: "t"}},
		{cmdAdminCert, adminCertCmd{Serial: "ab", Name: "n"}},
		{cmdAdminRevoke, adminRevokeCmd{Name: "n"}},
		{cmdAdminRevoke, adminRevokeCmd{Serial: "ab"}},
	} {
		b, _ := encodeEntry(c.t, c.hdr, []byte{1, 2})
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fsm := NewFSM(nil)
		fsm.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: data})
		fsm.Apply(&raft.Log{Index: 2, Type: raft.LogCommand, Data: data})
	})
}

func FuzzSnapshotRestore(f *testing.F) {
	h := newHarness(f)
	populate(h)
	var buf bytes.Buffer
	_ = writeSnapshot(&buf, h.f.state.clone())
	f.Add(buf.Bytes())
	f.Add([]byte(snapshotMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = NewFSM(nil).Restore(nopCloser{bytes.NewReader(data)})
	})
}

// discardLogger discards logs unless FEDGE_TEST_LOG is set (debugging aid).
func discardLogger() *slog.Logger {
	if os.Getenv("FEDGE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// TestModelCommitWithPush: a commit's payload is the model file, the push
// delta and the strategy state; all three survive a snapshot, and a
// version-1 snapshot (no push deltas) still restores.
func TestModelCommitWithPush(t *testing.T) {
	h := newHarness(t)
	populate(h)
	file, push, state := bytes.Repeat([]byte{9}, 100), []byte("push!"), []byte("st8")
	v := h.ok(cmdModelCommit, modelCommitCmd{
		Model: ModelRecord{Hash: "h4", Job: "job1", Parent: 3, CreatedAt: t0, PushSize: len(push), StateSize: len(state)},
	}, append(append(append([]byte(nil), file...), push...), state...)).(uint64)
	check := func(f *FSM) {
		t.Helper()
		f.Read(func(s *State) {
			m := s.Models[v]
			if m.Size != 100 || m.PushSize != len(push) || m.StateSize != len(state) {
				t.Fatalf("model %d: sizes %d, %d, %d", v, m.Size, m.PushSize, m.StateSize)
			}
		})
		var m ModelRecord
		f.Read(func(s *State) { m = *s.Models[v] })
		if got := modelPart(t, f, v, m.filePart); !bytes.Equal(got, file) {
			t.Fatalf("model %d: file %q", v, got)
		}
		if got := modelPart(t, f, v, m.pushPart); !bytes.Equal(got, push) {
			t.Fatalf("model %d: push %q", v, got)
		}
		if got := modelPart(t, f, v, m.statePart); !bytes.Equal(got, state) {
			t.Fatalf("model %d: state %q", v, got)
		}
	}
	check(h.f)
	snap := snapshotBytes(t, h.f)
	r := NewFSMWithBlobs(nil, h.f.blobs)
	if err := r.Restore(nopCloser{bytes.NewReader(snap)}); err != nil {
		t.Fatal(err)
	}
	check(r)
	// A push without a parent, or sizes past the payload, are refused.
	for _, c := range []ModelRecord{
		{Hash: "x", PushSize: 3},
		{Hash: "x", Parent: 3, PushSize: 60, StateSize: 50},
	} {
		if err, ok := h.apply(cmdModelCommit, modelCommitCmd{Model: c}, file).(error); !ok || !errors.Is(err, ErrBadEntry) {
			t.Fatalf("%+v accepted: %v", c, err)
		}
	}

	// Version 1: the same layout without the push fields.
	old := newHarness(t)
	populate(old)
	var buf bytes.Buffer
	if err := writeSnapshotV1(&buf, old.f.state, old.f.blobs); err != nil {
		t.Fatal(err)
	}
	r1 := NewFSM(nil)
	if err := r1.Restore(nopCloser{bytes.NewReader(buf.Bytes())}); err != nil {
		t.Fatalf("version-1 snapshot: %v", err)
	}
	if got, want := snapshotBytes(t, r1), snapshotBytes(t, old.f); !bytes.Equal(got, want) {
		t.Fatal("a version-1 snapshot restores to another state")
	}
}

// writeSnapshotV1 writes the version-1 snapshot layout (before push
// deltas), as session 1's coordinators did.
func writeSnapshotV1(w io.Writer, s *State, blobs BlobStore) error {
	return writeSnapshotOld(w, s, blobs, 1)
}

// writeSnapshotOld writes the snapshot layout of version 1 or 2 (2 added
// each model's push delta), with the model bytes inline, as coordinators
// before blobs did.
func writeSnapshotOld(w io.Writer, s *State, blobs BlobStore, version byte) error {
	cp := *s
	cp.Models = map[uint64]*ModelRecord{}
	for v, m := range s.Models {
		c := *m
		cp.Models[v] = &c
	}
	s = &cp
	files := map[uint64][]byte{}
	states := map[uint64][]byte{}
	pushes := map[uint64][]byte{}
	for v, m := range s.Models {
		if m.held() {
			var err error
			if files[v], err = readBlobRange(blobs, m.BlobHash, 0, int64(m.Size)); err != nil {
				return err
			}
			off, n := m.pushPart()
			if pushes[v], err = readBlobRange(blobs, m.BlobHash, off, n); err != nil {
				return err
			}
			off, n = m.statePart()
			if states[v], err = readBlobRange(blobs, m.BlobHash, off, n); err != nil {
				return err
			}
		}
		m.BlobHash, m.BlobSize = "", 0 // version 1 knew no blob names
	}
	h := sha256.New()
	mw := io.MultiWriter(w, h)
	meta, err := json.Marshal(s)
	if err != nil {
		return err
	}
	var b []byte
	b = append(b, snapshotMagic...)
	b = append(b, version)
	b = binary.AppendUvarint(b, uint64(len(meta)))
	b = append(b, meta...)
	var versions []uint64
	for _, v := range sortedKeys(s.Models) {
		if files[v] != nil {
			versions = append(versions, v)
		}
	}
	b = binary.AppendUvarint(b, uint64(len(versions)))
	for _, v := range versions {
		b = binary.AppendUvarint(b, v)
		b = binary.AppendUvarint(b, uint64(len(files[v])))
		b = append(b, files[v]...)
		b = binary.AppendUvarint(b, uint64(len(states[v])))
		b = append(b, states[v]...)
		if version >= 2 {
			b = binary.AppendUvarint(b, uint64(len(pushes[v])))
			b = append(b, pushes[v]...)
		}
	}
	if _, err := mw.Write(b); err != nil {
		return err
	}
	_, err = w.Write(h.Sum(nil))
	return err
}

// TestSnapshotIsPointInTime: what the state becomes after Snapshot
// returns does not reach the persisted snapshot.
func TestSnapshotIsPointInTime(t *testing.T) {
	h := newHarness(t)
	populate(h)
	snap, err := h.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var jobs int
	h.f.mu.Lock()
	name := h.f.state.ClusterName
	jobs = len(h.f.state.Jobs)
	h.f.state.ClusterName = "changed after the snapshot"
	h.f.state.Jobs["late"] = &JobRecord{ID: "late"}
	h.f.mu.Unlock()
	var buf bytes.Buffer
	if err := snap.(*fsmSnapshot).write(&buf); err != nil {
		t.Fatal(err)
	}
	got, err := readSnapshot(&buf, h.f.blobs)
	if err != nil {
		t.Fatal(err)
	}
	if got.ClusterName != name || len(got.Jobs) != jobs {
		t.Fatalf("snapshot saw later changes: name %q jobs %d (want %q, %d)", got.ClusterName, len(got.Jobs), name, jobs)
	}
}

// TestJobEvalAttempts: a job whose last round is due for evaluation stays
// running through failed evaluation rounds, is done after the third (or
// after one that commits, or after an aborted third), and refuses a
// fourth; an evaluation of a job owing none is refused.
func TestJobEvalAttempts(t *testing.T) {
	for _, last := range []string{RoundFailed, RoundCommitted, RoundAborted} {
		t.Run(last, func(t *testing.T) {
			h := newHarness(t)
			h.ok(cmdBootstrap, bootstrapCmd{ClusterName: "c1", CA: []byte("ca")}, nil)
			spec := JobSpec{Model: "2nn", Rounds: 2, EvalEvery: 2}
			if err := spec.Normalize(); err != nil {
				t.Fatal(err)
			}
			h.ok(cmdJobCreate, JobRecord{ID: "j", Spec: spec, CreatedAt: t0}, nil)
			state := func() (j JobRecord) { h.f.Read(func(s *State) { j = *s.Jobs["j"] }); return j }
			for i := 1; i <= 2; i++ {
				if err, ok := h.apply(cmdRoundStart, RoundRecord{Job: "j", Kind: RoundEval, Term: 1}, nil).(error); !ok || !errors.Is(err, ErrConflict) {
					t.Fatalf("eval before round %d: %v, want a conflict", i, err)
				}
				id := h.ok(cmdRoundStart, RoundRecord{Job: "j", Kind: RoundTrain, Number: i, Term: 1}, nil).(uint64)
				h.ok(cmdRoundEnd, RoundRecord{ID: id, State: RoundCommitted, ModelOut: uint64(i)}, nil)
			}
			for a := 1; a <= maxEvalAttempts; a++ {
				if j := state(); j.State != JobRunning {
					t.Fatalf("attempt %d: job %s, want running until its evaluation", a, j.State)
				}
				id := h.ok(cmdRoundStart, RoundRecord{Job: "j", Kind: RoundEval, Term: 1, ModelIn: 2}, nil).(uint64)
				end := RoundRecord{ID: id, State: RoundFailed, Error: "too few"}
				if a == maxEvalAttempts {
					end.State = last
				}
				switch end.State {
				case RoundCommitted:
					end.Metrics = map[string]float64{"eval_accuracy": 0.9, "eval_loss": 0.3, "eval_examples": 30, "survivors": 3}
					h.ok(cmdRoundEnd, end, nil)
				case RoundAborted:
					h.ok(cmdAbortRounds, abortCmd{Term: 2, At: t0, Reason: "leader changed"}, nil)
				default:
					h.ok(cmdRoundEnd, end, nil)
				}
			}
			j := state()
			if j.State != JobDone || j.EvalAttempts != maxEvalAttempts {
				t.Fatalf("after %d attempts: job %s, %d attempts; want done", maxEvalAttempts, j.State, j.EvalAttempts)
			}
			if got := j.Eval != nil; got != (last == RoundCommitted) {
				t.Fatalf("job's evaluation %+v after a %s last attempt", j.Eval, last)
			}
			if j.Eval != nil && (j.Eval.AfterRound != 2 || j.Eval.Accuracy != 0.9 || j.Eval.Examples != 30 || j.Eval.Agents != 3 || j.Eval.Model != 2) {
				t.Fatalf("job's evaluation %+v", j.Eval)
			}
			if _, ok := h.apply(cmdRoundStart, RoundRecord{Job: "j", Kind: RoundEval, Term: 2}, nil).(error); !ok {
				t.Fatal("a fourth evaluation round started")
			}
		})
	}
}

// modelPart reads one part (m.filePart, m.pushPart, m.statePart) of
// version's blob from f's store.
func modelPart(t testing.TB, f *FSM, version uint64, part func() (int64, int64)) []byte {
	t.Helper()
	b, err := f.openModel(version)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	out, err := b.part(part())
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// testBlobHash is a well-formed blob name for records built by hand.
func testBlobHash(i byte) string {
	sum := sha256.Sum256([]byte{i})
	return hex.EncodeToString(sum[:])
}
