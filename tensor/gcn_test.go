package tensor_test

import (
	"context"
	"testing"

	"github.com/fedge/fedge/tensor"
	"github.com/fedge/fedge/tensor/data"
)

// coraLike is a synthetic graph the size of Cora (2,708 nodes, 1,433
// features, 7 classes) with Kipf and Welling's split: 20 labelled nodes per
// class for training, the last 1,000 for testing.
func coraLike(tb testing.TB) (g *tensor.Graph, train, test []int) {
	tb.Helper()
	g, err := data.SyntheticGraph(2708, 7, 1433, 1)
	if err != nil {
		tb.Fatal(err)
	}
	per := make([]int, g.Classes)
	for i, y := range g.Y[:g.Nodes()-1000] {
		if per[y] < 20 {
			per[y]++
			train = append(train, i)
		}
	}
	for i := g.Nodes() - 1000; i < g.Nodes(); i++ {
		test = append(test, i)
	}
	return g, train, test
}

// TestGCNCoraLike trains the named gcn spec the way Kipf and Welling
// trained it on Cora (Adam lr 0.01, weight decay 5e-4, dropout 0.5) on a
// graph where the features alone are weakly informative: with the real
// edges it must beat the same model given no edges (self loops only) by a
// wide margin.
func TestGCNCoraLike(t *testing.T) {
	g, train, test := coraLike(t)
	epochs := 100
	if testing.Short() {
		epochs = 50
	}
	accuracy := func(g *tensor.Graph) float64 {
		spec, _ := tensor.NamedSpec(tensor.SpecGCN)
		m, err := tensor.NewModel(spec, 1)
		if err != nil {
			t.Fatal(err)
		}
		opt := tensor.NewAdam(tensor.AdamConfig{LR: 0.01, WeightDecay: 5e-4})
		if _, err := tensor.TrainGraph(context.Background(), m, g, train, tensor.TrainConfig{Epochs: epochs, Seed: 1, Optimizer: opt}); err != nil {
			t.Fatal(err)
		}
		met, err := tensor.EvaluateGraph(m, g, test)
		if err != nil {
			t.Fatal(err)
		}
		return met.Accuracy()
	}
	withEdges := accuracy(g)
	alone := *g
	var err error
	if alone.Adj, err = tensor.NormalizeAdjacency(g.Nodes(), nil); err != nil {
		t.Fatal(err)
	}
	withoutEdges := accuracy(&alone)
	t.Logf("test accuracy: %.3f with edges, %.3f without", withEdges, withoutEdges)
	if withEdges < 0.8 || withEdges < withoutEdges+0.1 {
		t.Errorf("test accuracy %.3f with edges, %.3f without; want >= 0.8 and 10 points better", withEdges, withoutEdges)
	}
}

func BenchmarkTrainGCN_CoraLike(b *testing.B) {
	g, train, _ := coraLike(b)
	spec, _ := tensor.NamedSpec(tensor.SpecGCN)
	m, err := tensor.NewModel(spec, 1)
	if err != nil {
		b.Fatal(err)
	}
	opt := tensor.NewAdam(tensor.AdamConfig{LR: 0.01, WeightDecay: 5e-4})
	b.ReportAllocs()
	b.ResetTimer()
	if _, err := tensor.TrainGraph(context.Background(), m, g, train, tensor.TrainConfig{Epochs: b.N, Optimizer: opt}); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "epochs/s")
}
