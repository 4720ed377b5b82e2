package coordinator

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// commitByHash stores payload in the harness's blob store and commits a
// version naming it (FSM version 3: no bytes in the entry).
func (h *fsmHarness) commitByHash(c cmdType, m ModelRecord, round *RoundRecord, payload []byte) uint64 {
	h.t.Helper()
	hash, err := putBlob(h.f.blobs, payload)
	if err != nil {
		h.t.Fatal(err)
	}
	m.BlobHash, m.BlobSize = hash, int64(len(payload))
	var hdr any = modelCommitCmd{Model: m, Round: round}
	if c == cmdModelImport {
		hdr = modelImportCmd{Model: m}
	}
	b, err := encodeEntry(c, hdr, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	if len(b) > 1<<20 {
		h.t.Fatalf("a %d-byte log entry for a %d-byte model", len(b), len(payload))
	}
	return h.ok(c, hdr, nil).(uint64)
}

func TestFileBlobsPartialIsNeverVisible(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenFileBlobs(dir)
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("fedge"), 1000)
	sum := sha256.Sum256(data)
	hash := hex.EncodeToString(sum[:])
	w, err := s.Create(hash)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt(data[:2000], 0); err != nil {
		t.Fatal(err)
	}
	w.Close() // a transfer broken half way (or a crash)
	if s.Has(hash) {
		t.Fatal("a half-written blob is visible")
	}
	if _, err := s.Open(hash); !errors.Is(err, ErrBlobMissing) {
		t.Fatalf("opening a half-written blob: %v", err)
	}
	if hs, _ := s.Hashes(); len(hs) != 0 {
		t.Fatalf("listed %v", hs)
	}
	// A later writer resumes after what is there.
	w, err = s.Create(hash)
	if err != nil {
		t.Fatal(err)
	}
	if got := w.Written(); got != 2000 {
		t.Fatalf("resumed at %d, want 2000", got)
	}
	if _, err := w.WriteAt(data[2000:], 2000); err != nil {
		t.Fatal(err)
	}
	var wrong [32]byte
	if err := w.Commit(wrong); err == nil {
		t.Fatal("committed under another content's name")
	}
	if err := w.Commit(sum); err != nil {
		t.Fatal(err)
	}
	w.Close()
	got, err := readBlobRange(s, hash, 0, int64(len(data)))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, hash+".part")); !os.IsNotExist(err) {
		t.Fatalf("the partial copy stayed: %v", err)
	}
}

// TestFileBlobsSameBlobTwice: two writers of one blob at once (two jobs
// committing identical initial models stage the same bytes) both commit;
// the second finds the blob the first committed rather than failing.
func TestFileBlobsSameBlobTwice(t *testing.T) {
	s, err := OpenFileBlobs(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("twice"), 1000)
	sum := sha256.Sum256(data)
	hash := hex.EncodeToString(sum[:])
	var ws []BlobWriter
	for range 2 {
		w, err := s.Create(hash)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		if _, err := w.WriteAt(data, 0); err != nil {
			t.Fatal(err)
		}
		ws = append(ws, w)
	}
	for i, w := range ws {
		if err := w.Commit(sum); err != nil {
			t.Fatalf("writer %d's commit: %v", i, err)
		}
	}
	got, err := readBlobRange(s, hash, 0, int64(len(data)))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back: %v", err)
	}
}

// TestBlobGCKeepsNamedVersions: retention removes a dropped version's
// blob from the store, and never one the registry (stable, a job's
// current version, a pinned one, the newest) or a rollout still names.
func TestBlobGCKeepsNamedVersions(t *testing.T) {
	dir := t.TempDir()
	blobs, err := OpenFileBlobs(dir)
	if err != nil {
		t.Fatal(err)
	}
	h := &fsmHarness{t: t, f: NewFSMWithBlobs(nil, blobs)}
	h.ok(cmdBootstrap, bootstrapCmd{ClusterName: "c1", CA: []byte("ca"), KeepModels: 1}, nil)
	spec := JobSpec{Model: "2nn", Rounds: 10}
	if err := spec.Normalize(); err != nil {
		t.Fatal(err)
	}
	h.ok(cmdJobCreate, JobRecord{ID: "job1", Spec: spec, CreatedAt: t0}, nil)
	commit := func(i int) uint64 {
		id := h.ok(cmdRoundStart, RoundRecord{Job: "job1", Kind: RoundTrain, Number: i, Term: 1, StartedAt: t0}, nil).(uint64)
		return h.commitByHash(cmdModelCommit, ModelRecord{Hash: "h", Job: "job1", CreatedAt: t0, Parent: uint64(max(i-1, 0))},
			&RoundRecord{ID: id, State: RoundCommitted, EndedAt: t0}, bytes.Repeat([]byte{byte(i)}, 1000))
	}
	v1 := commit(0) // stable: the cluster's first version
	v2 := commit(1)
	h.ok(cmdRolloutCreate, RolloutRecord{ID: "r1", Model: v2, Cohorts: []Cohort{{Name: "all", Percent: 100}}, Gate: "accuracy>=baseline-0.5", CreatedAt: t0}, nil)
	v3 := commit(2)
	pinned := h.commitByHash(cmdModelImport, ModelRecord{Hash: "imp", CreatedAt: t0}, nil, bytes.Repeat([]byte{'p'}, 1000))
	h.ok(cmdModelPin, pinCmd{Version: pinned, Pinned: true}, nil)
	v4 := h.commitByHash(cmdModelImport, ModelRecord{Hash: "imp2", CreatedAt: t0}, nil, bytes.Repeat([]byte{'x'}, 1000))
	v5 := commit(3) // the job's current version and the newest

	hashes := map[uint64]string{}
	h.f.Read(func(s *State) {
		for v, m := range s.Models {
			hashes[v] = m.BlobHash
		}
	})
	wantHeld := map[uint64]bool{v1: true, v2: true, pinned: true, v5: true}
	onDisk := func() map[string]bool {
		hs, err := blobs.Hashes()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for _, h := range hs {
			out[h] = true
		}
		return out
	}
	disk := onDisk()
	for _, v := range []uint64{v1, v2, v3, pinned, v4, v5} {
		held := hashes[v] != ""
		if held != wantHeld[v] {
			t.Errorf("version %d held=%v, want %v", v, held, wantHeld[v])
		}
		if held && !disk[hashes[v]] {
			t.Errorf("version %d is named but its blob is not in the store", v)
		}
		if _, err := h.f.ModelFile(v); held && err != nil {
			t.Errorf("version %d: %v", v, err)
		}
	}
	if len(disk) != len(wantHeld) {
		t.Errorf("%d blobs in the store, want %d (dropped versions' blobs are removed)", len(disk), len(wantHeld))
	}
	// The rollout ends: its candidate is no longer named, and goes.
	h.ok(cmdRolloutDecide, decideCmd{ID: "r1", Decision: Decision{At: t0, Action: "rollback", By: "operator:a"}}, nil)
	h.ok(cmdModelPin, pinCmd{Version: pinned, Pinned: false}, nil)
	disk = onDisk()
	if disk[hashes[v2]] || disk[hashes[pinned]] {
		t.Errorf("the rolled-back candidate's or the unpinned version's blob stayed")
	}
	if !disk[hashes[v1]] || !disk[hashes[v5]] {
		t.Errorf("the stable or the job's version lost its blob")
	}
}

// TestOldFormatEntriesAndSnapshots: a log written before blobs (model
// bytes inside the entries) replays into the store, and snapshots of
// formats 1 and 2 (bytes inline) restore, naming the same blobs; the
// format-3 snapshot carries no model bytes.
func TestOldFormatEntriesAndSnapshots(t *testing.T) {
	blobs, err := OpenFileBlobs(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	old := &fsmHarness{t: t, f: NewFSMWithBlobs(nil, blobs)}
	populate(old) // entries with the model bytes as payload
	file, push, state := bytes.Repeat([]byte{9}, 200_000), []byte("push!"), []byte("st8")
	v := old.ok(cmdModelCommit, modelCommitCmd{
		Model: ModelRecord{Hash: "h4", Job: "job1", Parent: 3, CreatedAt: t0, PushSize: len(push), StateSize: len(state)},
	}, append(append(append([]byte(nil), file...), push...), state...)).(uint64)
	if got, err := old.f.ModelFile(v); err != nil || !bytes.Equal(got, file) {
		t.Fatalf("an old entry's model bytes: %v", err)
	}
	snap := snapshotBytes(t, old.f)
	if len(snap) > len(file)/10 {
		t.Fatalf("a %d-byte snapshot for a %d-byte model: it carries the bytes", len(snap), len(file))
	}
	for _, version := range []byte{1, 2} {
		var buf bytes.Buffer
		if err := writeSnapshotOld(&buf, old.f.state, old.f.blobs, version); err != nil {
			t.Fatal(err)
		}
		fresh := NewMemBlobs()
		r := NewFSMWithBlobs(nil, fresh)
		if err := r.Restore(nopCloser{bytes.NewReader(buf.Bytes())}); err != nil {
			t.Fatalf("version-%d snapshot: %v", version, err)
		}
		if version == 2 && !bytes.Equal(snapshotBytes(t, r), snap) {
			t.Fatalf("a version-2 snapshot restores to another state")
		}
		if got, err := r.ModelFile(v); err != nil || !bytes.Equal(got, file) {
			t.Fatalf("version-%d snapshot: model bytes: %v", version, err)
		}
	}
}
