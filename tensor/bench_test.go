package tensor

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"
)

// mnistLike returns n synthetic examples shaped like MNIST: [1, 28, 28]
// pixels in [0, 1) and 10 classes.
func mnistLike(n int) *Dataset {
	rng := rand.New(rand.NewPCG(uint64(n), 1))
	ds := &Dataset{X: make([]float32, n*784), Y: make([]int32, n), Shape: []int{1, 28, 28}, Classes: 10}
	for i := range ds.X {
		ds.X[i] = rng.Float32()
	}
	for i := range ds.Y {
		ds.Y[i] = int32(rng.IntN(10))
	}
	return ds
}

// benchTrain runs b.N SGD steps of batch size batch (one epoch of a
// one-batch dataset per step, so shuffling and gathering are included).
// With std, the model starts with a standardize layer.
func benchTrain(b *testing.B, name string, batch int, std bool) {
	spec, err := NamedSpec(name)
	if err != nil {
		b.Fatal(err)
	}
	if std {
		f := spec.Features()
		shift, scale := make([]float32, f), make([]float32, f)
		for j := range f {
			shift[j], scale[j] = 0.13, 3.2
		}
		if spec, err = spec.Standardized(shift, scale); err != nil {
			b.Fatal(err)
		}
	}
	m, err := NewModel(spec, 1)
	if err != nil {
		b.Fatal(err)
	}
	ds := mnistLike(batch)
	cfg := TrainConfig{BatchSize: batch, Optimizer: NewSGD(SGDConfig{LR: 0.01})}
	if _, err := Train(context.Background(), m, ds, cfg); err != nil { // warm up the workspace
		b.Fatal(err)
	}
	b.ReportAllocs()
	cpu0, cpuOK := cpuTime()
	b.ResetTimer()
	cfg.Epochs = b.N
	if _, err := Train(context.Background(), m, ds, cfg); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	reportThroughput(b, b.N*batch, cpu0, cpuOK)
}

// reportThroughput reports samples per wall-clock second and, where the
// CPU time is known, samples per CPU-second: on a machine shared with other
// work the second is the steadier measure of the code's cost.
func reportThroughput(b *testing.B, samples int, cpu0 time.Duration, cpuOK bool) {
	b.ReportMetric(float64(samples)/b.Elapsed().Seconds(), "samples/s")
	if cpu1, ok := cpuTime(); ok && cpuOK && cpu1 > cpu0 {
		b.ReportMetric(float64(samples)/(cpu1-cpu0).Seconds(), "samples/cpu-s")
	}
}

func BenchmarkTrain2NN_B10(b *testing.B)    { benchTrain(b, Spec2NN, 10, false) }
func BenchmarkTrain2NN_B64(b *testing.B)    { benchTrain(b, Spec2NN, 64, false) }
func BenchmarkTrain2NNStd_B10(b *testing.B) { benchTrain(b, Spec2NN, 10, true) }
func BenchmarkTrain2NNStd_B64(b *testing.B) { benchTrain(b, Spec2NN, 64, true) }
func BenchmarkTrainCNN_B50(b *testing.B)    { benchTrain(b, SpecCNN, 50, false) }

func benchPredict(b *testing.B, name string, n int) {
	spec, err := NamedSpec(name)
	if err != nil {
		b.Fatal(err)
	}
	m, err := NewModel(spec, 1)
	if err != nil {
		b.Fatal(err)
	}
	ds := mnistLike(n)
	dst := make([]float32, n*10)
	if err := m.PredictInto(dst, ds.X, n); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	cpu0, cpuOK := cpuTime()
	for b.Loop() {
		if err := m.PredictInto(dst, ds.X, n); err != nil {
			b.Fatal(err)
		}
	}
	reportThroughput(b, b.N*n, cpu0, cpuOK)
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/10k")
}

func BenchmarkPredict2NN_10k(b *testing.B) { benchPredict(b, Spec2NN, 10000) }
func BenchmarkPredictCNN_10k(b *testing.B) { benchPredict(b, SpecCNN, 10000) }
