package coordinator

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/fedge/fedge/protocol/encoding"
	"github.com/fedge/fedge/tensor"
)

// twoVersions returns the model files of a 2nn and of the same model after
// a small update, as consecutive versions of a job look.
func twoVersions(t *testing.T) (base, next *tensor.Model, baseFile, nextFile []byte) {
	t.Helper()
	spec, err := tensor.NamedSpec("2nn")
	if err != nil {
		t.Fatal(err)
	}
	base, err = tensor.NewModel(spec, 1)
	if err != nil {
		t.Fatal(err)
	}
	next = base.Clone()
	r := rand.New(rand.NewPCG(1, 2))
	for i := range next.Params {
		next.Params[i] += float32(r.NormFloat64() * 1e-3)
	}
	if baseFile, err = base.MarshalBinary(); err != nil {
		t.Fatal(err)
	}
	if nextFile, err = next.MarshalBinary(); err != nil {
		t.Fatal(err)
	}
	return base, next, baseFile, nextFile
}

// fileOf returns a reader of b as a model blob's file part.
func fileOf(b []byte) *io.SectionReader {
	return io.NewSectionReader(bytes.NewReader(b), 0, int64(len(b)))
}

// readRef reads a served delta whole.
func readRef(t *testing.T, r *deltaRef) []byte {
	t.Helper()
	b := make([]byte, r.Size)
	if _, err := r.R.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDownloadsDeltaIsLosslessAndCached(t *testing.T) {
	base, next, baseFile, nextFile := twoVersions(t)
	d := downloads{dir: t.TempDir()}
	bh := base.Hash()
	ref, ok := d.delta(2, "h2", fileOf(nextFile), bh, fileOf(baseFile))
	if !ok || ref.Size >= int64(len(nextFile))*3/4 || ref.ID == "model/h2" {
		t.Fatalf("delta %v of %d bytes (id %s) for a %d-byte model", ok, ref.Size, ref.ID, len(nextFile))
	}
	blob := readRef(t, ref)
	want, err := encoding.Encode(next.Params, base.Params, encoding.LosslessDelta())
	if err != nil || !bytes.Equal(blob, want) {
		t.Fatalf("the spooled delta differs from Encode's (%v)", err)
	}
	got, err := encoding.Decode(blob, base.Params)
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if got[i] != next.Params[i] {
			t.Fatalf("parameter %d: %v, want %v", i, got[i], next.Params[i])
		}
	}
	// The next agent gets the very same bytes (resumption relies on it).
	again, ok := d.delta(2, "h2", fileOf(nextFile), bh, fileOf(baseFile))
	if !ok || again.R != ref.R || again.ID != ref.ID || !bytes.Equal(readRef(t, again), blob) {
		t.Fatal("a second request was encoded again, or differently")
	}
	again.Release()
	// A base of another architecture: no delta.
	other, err := tensor.NewModel(tensor.Spec{Input: []int{784}, Layers: []tensor.LayerSpec{{Type: tensor.LayerDense, Units: 10}}}, 3)
	if err != nil {
		t.Fatal(err)
	}
	otherFile, _ := other.MarshalBinary()
	if _, ok := d.delta(2, "h2", fileOf(nextFile), other.Hash(), fileOf(otherFile)); ok {
		t.Fatal("a delta against another architecture")
	}
	// Evicted while served: the spool file stays until released, then goes.
	spool := ref.R.(*os.File).Name()
	for v := uint64(3); v < 3+deltaCacheSize; v++ {
		if r, ok := d.delta(v, "h", fileOf(nextFile), bh, fileOf(baseFile)); ok {
			r.Release()
		}
	}
	if len(d.cache) > deltaCacheSize {
		t.Fatalf("cache of %d entries", len(d.cache))
	}
	if _, err := os.Stat(spool); err != nil {
		t.Fatalf("the spool file of a delta being served: %v", err)
	}
	if !bytes.Equal(readRef(t, ref), blob) {
		t.Fatal("an evicted delta changed while served")
	}
	ref.Release()
	if _, err := os.Stat(spool); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the spool file of a released, evicted delta: %v", err)
	}
	d.close()
	if ents, _ := os.ReadDir(d.dir); len(ents) != 0 {
		t.Fatalf("%d spool files after close", len(ents))
	}
}

// TestDownloadsDeltaMemory: encoding the delta of a 50 MB model against
// its parent allocates less than a quarter of the model: both files are
// read a chunk at a time and the delta goes to a spool file.
func TestDownloadsDeltaMemory(t *testing.T) {
	const p = 50 << 20 / 4
	spec, err := tensor.ExternalSpec("big", []tensor.ExternalTensor{{Name: "w", Shape: []int{p}}})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(5, 6))
	w, v := make([]float32, p), make([]float32, p)
	for i := range w {
		w[i] = float32(r.NormFloat64())
		v[i] = w[i] + float32(r.NormFloat64()*1e-3)
	}
	dir := t.TempDir()
	files := map[string]*os.File{}
	for name, params := range map[string][]float32{"base": w, "next": v} {
		m, err := tensor.NewExternalModel(spec, params)
		if err != nil {
			t.Fatal(err)
		}
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		bw := bufio.NewWriter(f)
		if _, err := m.WriteTo(bw); err != nil || bw.Flush() != nil {
			t.Fatal(err)
		}
		files[name] = f
	}
	section := func(f *os.File) *io.SectionReader {
		st, err := f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		return io.NewSectionReader(f, 0, st.Size())
	}
	baseHash := tensor.HashParams(w)
	d := downloads{dir: t.TempDir()}
	defer d.close()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	ref, ok := d.delta(2, "h2", section(files["next"]), baseHash, section(files["base"]))
	runtime.ReadMemStats(&after)
	if !ok {
		t.Fatal("no delta")
	}
	defer ref.Release()
	if got := after.TotalAlloc - before.TotalAlloc; got > 4*p/4 {
		t.Fatalf("encoding the delta of a %d-byte model allocated %d bytes, want under a quarter", 4*p, got)
	} else {
		t.Logf("encoding the delta of a %d-byte model allocated %d bytes (delta %d bytes)", 4*p, got, ref.Size)
	}
	dst := append([]float32(nil), w...)
	var dec encoding.Decoder
	if err := dec.Apply(dst, ref.R, ref.Size); err != nil {
		t.Fatal(err)
	}
	if tensor.HashParams(dst) != tensor.HashParams(v) {
		t.Fatal("the spooled delta does not rebuild the next version")
	}
}

// TestSendsDelta: agents below chunkedDeltaVersion, which decode a delta
// whole, get deltas of models up to maxDeltaModelBytes only.
func TestSendsDelta(t *testing.T) {
	tests := []struct {
		size    int64
		version uint32
		want    bool
	}{
		{maxDeltaModelBytes, chunkedDeltaVersion - 1, true},
		{maxDeltaModelBytes + 1, chunkedDeltaVersion - 1, false},
		{maxDeltaModelBytes + 1, chunkedDeltaVersion, true},
		{8 << 30, chunkedDeltaVersion, true},
	}
	for _, tt := range tests {
		if got := sendsDelta(tt.size, tt.version); got != tt.want {
			t.Errorf("sendsDelta(%d, %d) = %v, want %v", tt.size, tt.version, got, tt.want)
		}
	}
}

// TestEngineQuantizedPush runs jobs that push int8 and float16 deltas: every
// committed version is exactly its parent plus the decoded push, the push
// is a fraction of the model file, and the job still learns.
func TestEngineQuantizedPush(t *testing.T) {
	run := func(push string) *engineHarness {
		h := newEngineHarness(t, 5, 300)
		startJob(t, h, JobSpec{
			Model: "2nn", Rounds: 3, Fraction: 1, MinClients: 4, Seed: 5, Push: push,
			Plan:     LocalPlan{Epochs: 1, BatchSize: 10, LR: 0.1},
			SecAgg:   SecAggSpec{Enabled: true, Clip: 1, Bits: 16},
			Deadline: Deadlines{Train: Duration(60 * time.Second), Stage: Duration(5 * time.Second)},
		})
		h.runUntil("job done", 120*time.Second, func(s *State) bool { return s.Jobs["job"].State == JobDone })
		return h
	}
	lossless := run("lossless")
	var lastLossless uint64
	lossless.fsm.Read(func(s *State) { lastLossless = s.Jobs["job"].Model })
	lossless.fsm.Read(func(s *State) {
		for _, m := range s.Models {
			if m.PushSize != 0 {
				t.Fatalf("a lossless job stored a push for version %d", m.Version)
			}
		}
	})
	for _, tc := range []struct {
		push     string
		maxRatio float64
	}{{"int8", 0.35}, {"float16", 0.6}} {
		t.Run(tc.push, func(t *testing.T) { checkQuantizedPush(t, run(tc.push), lossless, lastLossless, tc.maxRatio) })
	}
}

// checkQuantizedPush checks a finished job of h against the same job with
// lossless pushes (ref, whose last version is refLast).
func checkQuantizedPush(t *testing.T, h, ref *engineHarness, refLast uint64, maxRatio float64) {
	var pushed []*ModelRecord
	h.fsm.Read(func(s *State) {
		for _, v := range sortedKeys(s.Models) {
			if m := s.Models[v]; m.Parent != 0 {
				c := *m
				pushed = append(pushed, &c)
			}
		}
	})
	if len(pushed) != 3 {
		t.Fatalf("%d versions with a parent", len(pushed))
	}
	for _, m := range pushed {
		parent, _, err := h.eng.loadModel(m.Parent)
		if err != nil {
			t.Fatal(err)
		}
		push := modelPart(t, h.fsm, m.Version, m.pushPart)
		got, err := encoding.Decode(push, parent.Params)
		if err != nil {
			t.Fatalf("version %d: %v", m.Version, err)
		}
		model, _, _ := h.eng.loadModel(m.Version)
		for i := range got {
			if got[i] != model.Params[i] {
				t.Fatalf("version %d, parameter %d: push gives %v, committed %v", m.Version, i, got[i], model.Params[i])
			}
		}
		if ratio := float64(m.PushSize) / float64(m.Size); ratio > maxRatio {
			t.Fatalf("version %d: push of %d bytes for a %d-byte model (%.2f)", m.Version, m.PushSize, m.Size, ratio)
		} else {
			t.Logf("version %d: push %d bytes, %.2f of the model file", m.Version, m.PushSize, ratio)
		}
	}
	// The same job with lossless pushes (the agents train with the same
	// seeds): quantizing the global update costs next to nothing.
	acc, want := h.accuracy(pushed[2].Version), ref.accuracy(refLast)
	t.Logf("test accuracy after 3 rounds: %.4f, lossless %.4f", acc, want)
	if acc < want-0.02 {
		t.Fatalf("accuracy %.3f with quantized pushes, %.3f lossless", acc, want)
	}
}

// TestQuantizePushErrorFeedback: a coordinate whose update stays below the
// int8 step of its block (next to a large one) never moves without error
// feedback; with it, it tracks the sum of its updates within one step.
func TestQuantizePushErrorFeedback(t *testing.T) {
	opts, _ := pushOptions("int8")
	const rounds = 20
	run := func(feedback bool) (committed []float32) {
		committed = make([]float32, 256) // one int8 block
		var residual []float32
		for range rounds {
			next := append([]float32(nil), committed...)
			next[0] += 1     // sets the block's scale: step 1/127
			next[1] += 0.001 // an eighth of a step
			var err error
			var dropped []float32
			if _, dropped, err = quantizePush(next, committed, residual, opts); err != nil {
				t.Fatal(err)
			}
			if feedback {
				residual = dropped
			}
			committed = next
		}
		return committed
	}
	if got := run(false); got[1] != 0 {
		t.Fatalf("without feedback the small coordinate moved to %v", got[1])
	}
	got := run(true)
	step := float32(1.0 / 127)
	if want := float32(rounds * 0.001); got[1] < want-step || got[1] > want+step {
		t.Fatalf("with feedback the small coordinate is at %v, want %v ± %v", got[1], want, step)
	}
	if got[0] < rounds-1 || got[0] > rounds+1 {
		t.Fatalf("the large coordinate is at %v, want about %d", got[0], rounds)
	}
}

// TestDownloadsDeltaConcurrent: the agents of a round asking at once
// share one encoding, each served from the same spool file.
func TestDownloadsDeltaConcurrent(t *testing.T) {
	base, _, baseFile, nextFile := twoVersions(t)
	d := downloads{dir: t.TempDir()}
	defer d.close()
	refs := make([]*deltaRef, 6)
	var wg sync.WaitGroup
	for i := range refs {
		wg.Go(func() {
			if r, ok := d.delta(2, "h2", fileOf(nextFile), base.Hash(), fileOf(baseFile)); ok {
				refs[i] = r
			}
		})
	}
	wg.Wait()
	for i, r := range refs {
		if r == nil || r.R != refs[0].R {
			t.Fatalf("request %d: %v, want the first request's spool file", i, r)
		}
		r.Release()
	}
	if ents, _ := os.ReadDir(d.dir); len(ents) != 1 {
		t.Fatalf("%d spool files for one (version, base)", len(ents))
	}
}
