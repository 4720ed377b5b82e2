package tensor_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/fedge/fedge/internal/testutil"
	"github.com/fedge/fedge/tensor"
	"github.com/fedge/fedge/tensor/data"
)

// mnistModels caches the models trained for the quantization test and
// benchmark, so one process trains each once.
var mnistModels sync.Map // name → *trainedMNIST

type trainedMNIST struct {
	m           *tensor.Model
	calib, test *tensor.Dataset
}

// trainedForQuant trains name on real MNIST: the 2nn one epoch on 20,000
// training images (batch 10, lr 0.05), the cnn one epoch on 6,000 (batch
// 50, lr 0.05). Calibration uses 1,000 other training images, never the
// test set.
func trainedForQuant(tb testing.TB, name string) *trainedMNIST {
	tb.Helper()
	if v, ok := mnistModels.Load(name); ok {
		return v.(*trainedMNIST)
	}
	train, test, err := data.LoadMNIST(testutil.MNISTDir(tb))
	if err != nil {
		tb.Fatal(err)
	}
	spec, err := tensor.NamedSpec(name)
	if err != nil {
		tb.Fatal(err)
	}
	m, err := tensor.NewModel(spec, 1)
	if err != nil {
		tb.Fatal(err)
	}
	n, batch := 20000, 10
	if name == tensor.SpecCNN {
		n, batch = 6000, 50
	}
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	if _, err := tensor.Train(context.Background(), m, train.Subset(idx), tensor.TrainConfig{Epochs: 1, BatchSize: batch, LR: 0.05, Seed: 1}); err != nil {
		tb.Fatal(err)
	}
	cal := make([]int, 1000)
	for i := range cal {
		cal[i] = 50000 + i
	}
	tm := &trainedMNIST{m: m, calib: train.Subset(cal), test: test}
	mnistModels.Store(name, tm)
	return tm
}

// TestQuantizedMNISTAccuracy is the int8 accuracy bar: the 2nn and the cnn
// quantized with scales calibrated on 1,000 training images stay within
// 0.5 point of their float accuracy on the 10,000 MNIST test images, in
// about a quarter of the bytes.
func TestQuantizedMNISTAccuracy(t *testing.T) {
	for _, name := range []string{tensor.Spec2NN, tensor.SpecCNN} {
		t.Run(name, func(t *testing.T) {
			tm := trainedForQuant(t, name)
			fm, err := tensor.Evaluate(tm.m, tm.test)
			if err != nil {
				t.Fatal(err)
			}
			q, err := tensor.Quantize(tm.m, tm.calib.X, tm.calib.Len())
			if err != nil {
				t.Fatal(err)
			}
			qm, err := tensor.EvaluateQuantized(q, tm.test)
			if err != nil {
				t.Fatal(err)
			}
			fa, qa := 100*fm.Accuracy(), 100*qm.Accuracy()
			ratio := float64(4*tm.m.NumParams()) / float64(q.Bytes())
			t.Logf("%s: float32 %.2f%%, int8 %.2f%% (%s), bytes %d → %d (÷%.2f)", name, fa, qa, q.Kernel(), 4*tm.m.NumParams(), q.Bytes(), ratio)
			if qm.Total != 10000 || qa < fa-0.5 || qa > fa+0.5 {
				t.Errorf("int8 accuracy %.2f%%, float32 %.2f%%: more than 0.5 point apart", qa, fa)
			}
			if ratio < 3.9 {
				t.Errorf("bytes divided by %.2f, want about 4", ratio)
			}
		})
	}
}

// BenchmarkQuantMNIST runs float32 and int8 side by side on the models of
// TestQuantizedMNISTAccuracy: the 10,000 test images in one batch, and a
// single image (latency). Each reports the test accuracy (acc-%) and the
// parameter bytes.
func BenchmarkQuantMNIST(b *testing.B) {
	for _, name := range []string{tensor.Spec2NN, tensor.SpecCNN} {
		b.Run(name, func(b *testing.B) {
			tm := trainedForQuant(b, name)
			q, err := tensor.Quantize(tm.m, tm.calib.X, tm.calib.Len())
			if err != nil {
				b.Fatal(err)
			}
			type predictor interface {
				PredictInto(dst, x []float32, n int) error
			}
			fm, _ := tensor.Evaluate(tm.m, tm.test)
			qm, _ := tensor.EvaluateQuantized(q, tm.test)
			for _, v := range []struct {
				name  string
				p     predictor
				acc   float64
				bytes int
			}{
				{"float32", tm.m, fm.Accuracy(), 4 * tm.m.NumParams()},
				{"int8", q, qm.Accuracy(), q.Bytes()},
			} {
				for _, n := range []int{10000, 1} {
					b.Run(fmt.Sprintf("%s/batch=%d", v.name, n), func(b *testing.B) {
						x := tm.test.X[:n*tm.m.Features()]
						dst := make([]float32, n*10)
						for b.Loop() {
							if err := v.p.PredictInto(dst, x, n); err != nil {
								b.Fatal(err)
							}
						}
						b.ReportMetric(100*v.acc, "acc-%")
						b.ReportMetric(float64(v.bytes), "bytes")
					})
				}
			}
		})
	}
}
