package agent

import (
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"unsafe"

	"github.com/fedge/fedge/crypto/secagg"
	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/tensor"
)

// TestEncodeUpdateInPlace checks that the agent's in-place encoding of
// an update (delta, metrics and ring encoding in the trained weights'
// memory) sends exactly what EncodeUpdate computes with its own vectors,
// and that it allocates less than one more parameter vector.
func TestEncodeUpdateInPlace(t *testing.T) {
	const p = 1 << 20
	spec, err := tensor.ExternalSpec("big", []tensor.ExternalTensor{{Name: "w", Shape: []int{p}}})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	w := make([]float32, p)
	for i := range w {
		w[i] = rng.Float32() - 0.5
	}
	start, err := tensor.NewExternalModel(spec, w)
	if err != nil {
		t.Fatal(err)
	}
	trainedWith := func() *tensor.Model {
		m, err := tensor.ModelWith(spec, make([]float32, p, p+updateSlack))
		if err != nil {
			t.Fatal(err)
		}
		for i := range m.Params {
			m.Params[i] = start.Params[i] + float32(i%7)*1e-3
		}
		return m
	}
	q := &secagg.Quantizer{Clip: 1, Bits: 20, MaxWeight: 1024}
	dim := p + protocol.UpdateMetrics
	cfg := &secagg.Config{Dim: q.EncodedLen(dim), Quantizer: q}
	for _, tt := range []struct {
		name string
		dp   protocol.DPParams
	}{
		{"plain", protocol.DPParams{}},
		{"clipped", protocol.DPParams{ClipNorm: 0.5}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			plan := &protocol.RoundPlan{DP: tt.dp}
			stats := tensor.TrainStats{Loss: 0.7, Accuracy: 0.4}
			wantVec, want, err := EncodeUpdate(plan, cfg, start, trainedWith(), 30, stats, rand.New(rand.NewPCG(5, 6)), nil)
			if err != nil {
				t.Fatal(err)
			}
			var seen []float32
			_, got, err := encodeUpdate(plan, cfg, start, trainedWith(), 30, stats, rand.New(rand.NewPCG(5, 6)), nil, true, func(v []float32) { seen = slices.Clone(v) })
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(seen, wantVec) || !slices.Equal(got, want) {
				t.Fatal("the observed update or its in-place encoding differs from EncodeUpdate's")
			}
			trained := trainedWith()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, got, err = encodeUpdate(plan, cfg, start, trained, 30, stats, rand.New(rand.NewPCG(5, 6)), nil, true, nil)
			runtime.ReadMemStats(&after)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Fatal("the in-place encoding differs from EncodeUpdate's")
			}
			if unsafe.Pointer(&got[0]) != unsafe.Pointer(&trained.Params[0]) {
				t.Fatal("the encoding is not in the trained weights' memory")
			}
			if grew := after.TotalAlloc - before.TotalAlloc; grew >= 4*p {
				t.Fatalf("encoding a %d-parameter update allocated %d bytes, want less than one vector (%d)", p, grew, 4*p)
			}
		})
	}
}

// TestSubtractStoredModel checks the external round's delta against the
// stored start model: trained minus start exactly, streamed from the
// file, and refused when the file is not the round's start model.
func TestSubtractStoredModel(t *testing.T) {
	const p = 300_000
	spec, err := tensor.ExternalSpec("big", []tensor.ExternalTensor{{Name: "w", Shape: []int{p}}})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	w := make([]float32, p)
	for i := range w {
		w[i] = rng.Float32()
	}
	start, err := tensor.NewExternalModel(spec, w)
	if err != nil {
		t.Fatal(err)
	}
	files := &modelFiles{dir: t.TempDir()}
	data, err := files.write(start)
	if err != nil {
		t.Fatal(err)
	}
	trained := make([]float32, p)
	want := make([]float32, p)
	for i := range trained {
		trained[i] = rng.Float32()
		want[i] = trained[i] - start.Params[i]
	}
	got := slices.Clone(trained)
	if err := files.subtract(data, got, start.Hash()); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatal("the streamed delta differs from trained - start")
	}
	if err := files.subtract(data, slices.Clone(trained), protocol.Hash{1}); err == nil {
		t.Fatal("a stored model of another hash was subtracted")
	}
	if err := files.subtract(data, make([]float32, p+1), start.Hash()); err == nil {
		t.Fatal("a stored model of another size was subtracted")
	}
}
