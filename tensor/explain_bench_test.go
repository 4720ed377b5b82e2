package tensor_test

import (
	"context"
	"math"
	"testing"

	"github.com/fedge/fedge/internal/testutil"
	"github.com/fedge/fedge/tensor"
	"github.com/fedge/fedge/tensor/data"
)

// BenchmarkExplainCNN explains MNIST test digits with the FedAvg cnn
// (trained one epoch on 2,000 training digits) by integrated gradients,
// 32 steps from a black image, 16 digits per call: it reports
// explanations (one attribution per pixel of a digit) per second and the
// completeness error, |Σ attributions − (logit − baseline logit)|, mean
// and worst, absolute and relative to |logit − baseline logit|.
func BenchmarkExplainCNN(b *testing.B) {
	train, test, err := data.LoadMNIST(testutil.MNISTDir(b))
	if err != nil {
		b.Fatal(err)
	}
	spec, err := tensor.NamedSpec(tensor.SpecCNN)
	if err != nil {
		b.Fatal(err)
	}
	m, err := tensor.NewModel(spec, 1)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := tensor.Train(context.Background(), m, train.Subset(seq(2000)), tensor.TrainConfig{BatchSize: 50, LR: 0.05}); err != nil {
		b.Fatal(err)
	}
	const n, steps = 16, 32
	x := test.X[:n*784]
	var sumAbs, worstAbs, sumRel, worstRel float64
	count := 0
	b.ResetTimer()
	for i := range b.N {
		atts, err := m.Explain(x, n, nil, tensor.ExplainConfig{Steps: steps})
		if err != nil {
			b.Fatal(err)
		}
		if i > 0 {
			continue
		}
		for _, a := range atts {
			e := math.Abs(a.CompletenessError())
			rel := e / math.Max(1e-6, math.Abs(float64(a.Logit-a.BaselineLogit)))
			sumAbs, sumRel = sumAbs+e, sumRel+rel
			worstAbs, worstRel = max(worstAbs, e), max(worstRel, rel)
			count++
		}
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "explanations/s")
	b.ReportMetric(float64(b.N*n*784)/b.Elapsed().Seconds(), "attributions/s")
	b.ReportMetric(sumAbs/float64(count), "mean-abs-err")
	b.ReportMetric(worstAbs, "max-abs-err")
	b.ReportMetric(sumRel/float64(count), "mean-rel-err")
	b.ReportMetric(worstRel, "max-rel-err")
}

func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}
