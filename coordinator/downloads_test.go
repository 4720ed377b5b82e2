package coordinator

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/fedge/fedge/protocol"
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

func TestDownloadsDeltaIsLosslessAndCached(t *testing.T) {
	base, next, baseFile, nextFile := twoVersions(t)
	var d downloads
	bh := base.Hash()
	blob, id := d.blob(2, "h2", nextFile, bh, baseFile)
	if len(blob) >= len(nextFile)*3/4 || id == "model/h2" {
		t.Fatalf("delta of %d bytes (id %s) for a %d-byte model", len(blob), id, len(nextFile))
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
	again, id2 := d.blob(2, "h2", nextFile, bh, baseFile)
	if !bytes.Equal(again, blob) || id2 != id || &again[0] != &blob[0] {
		t.Fatal("a second request was encoded again, or differently")
	}
	// Without the base, or with a base of another architecture: the file.
	if b, id := d.blob(2, "h2", nextFile, protocol.Hash{}, nil); !bytes.Equal(b, nextFile) || id != "model/h2" {
		t.Fatalf("no base: %d bytes, id %s", len(b), id)
	}
	other, err := tensor.NewModel(tensor.Spec{Input: []int{784}, Layers: []tensor.LayerSpec{{Type: tensor.LayerDense, Units: 10}}}, 3)
	if err != nil {
		t.Fatal(err)
	}
	otherFile, _ := other.MarshalBinary()
	if b, _ := d.blob(2, "h2", nextFile, other.Hash(), otherFile); !bytes.Equal(b, nextFile) {
		t.Fatal("a delta against another architecture")
	}
	if len(d.cache) > deltaCacheSize {
		t.Fatalf("cache of %d entries", len(d.cache))
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
