package tensor

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// TrainGraph trains a graph model (one with gcnconv layers) for node
// classification, full batch: every epoch runs forward over all nodes of g,
// the softmax cross-entropy averaged over the nodes in trainIdx only,
// backward, and one optimizer step. cfg.BatchSize and cfg.NoShuffle do not
// apply; cfg.Seed drives dropout. It checks ctx between epochs.
func TrainGraph(ctx context.Context, m *Model, g *Graph, trainIdx []int, cfg TrainConfig) (TrainStats, error) {
	start := time.Now()
	if err := m.checkGraph(g, trainIdx); err != nil {
		return TrainStats{}, fmt.Errorf("tensor.TrainGraph: %w", err)
	}
	if err := m.checkParams(true); err != nil {
		return TrainStats{}, fmt.Errorf("tensor.TrainGraph: %w", err)
	}
	if len(trainIdx) == 0 {
		return TrainStats{}, nil
	}
	n := g.Nodes()
	cfg = cfg.withDefaults(n)
	ws := m.trainWorkspace(n)
	ps := &pass{train: true, rng: rand.New(rand.NewPCG(cfg.Seed, streamDropout)), adj: g.Adj, threads: cfg.Threads}
	var st TrainStats
	for epoch := 1; epoch <= cfg.Epochs; epoch++ {
		if err := ctx.Err(); err != nil {
			st.Duration, st.Workers = time.Since(start), int(ps.peak.Load())
			return st, fmt.Errorf("tensor.TrainGraph: epoch %d: %w", epoch, err)
		}
		loss, correct := m.trainStep(ws, ps, g.X[:n*m.Features()], g.Y, trainIdx, n)
		if math.IsNaN(loss) || math.IsInf(loss, 0) {
			st.Duration, st.Workers = time.Since(start), int(ps.peak.Load())
			return st, fmt.Errorf("tensor.TrainGraph: epoch %d: loss %v: %w", epoch, loss, ErrDiverged)
		}
		cfg.Optimizer.Step(m.Params, m.Grads)
		st.Epochs, st.Steps = epoch, epoch
		st.Examples += int64(len(trainIdx))
		st.Loss = loss / float64(len(trainIdx))
		st.Accuracy = float64(correct) / float64(len(trainIdx))
		if cfg.Progress != nil {
			cfg.Progress(TrainProgress{Epoch: epoch, Batch: 1, Batches: 1, Examples: st.Examples,
				Loss: st.Loss, Accuracy: st.Accuracy, EpochDone: true, Elapsed: time.Since(start)})
		}
	}
	st.Duration, st.Workers = time.Since(start), int(ps.peak.Load())
	return st, nil
}

// EvaluateGraph returns the accuracy and loss sums of m over the nodes idx
// of g (dropout off). The forward pass covers the whole graph, since every
// node's output depends on its neighbours.
func EvaluateGraph(m *Model, g *Graph, idx []int) (Metrics, error) {
	logits, err := m.graphLogits(g, idx)
	if err != nil {
		return Metrics{}, fmt.Errorf("tensor.EvaluateGraph: %w", err)
	}
	loss, correct := softmaxXent(logits, m.Classes(), g.Y, idx, g.Nodes(), nil, 1)
	return Metrics{Correct: correct, Total: len(idx), LossSum: loss}, nil
}

// PredictGraph returns the class probabilities of every node of g,
// row-major Nodes() × Classes(). It is safe for concurrent use.
func (m *Model) PredictGraph(g *Graph) ([]float32, error) {
	logits, err := m.graphLogits(g, nil)
	if err != nil {
		return nil, fmt.Errorf("tensor.Model.PredictGraph: %w", err)
	}
	out := append([]float32(nil), logits...)
	softmaxRows(out, g.Nodes(), m.Classes())
	return out, nil
}

// graphLogits runs an evaluation forward pass over all nodes of g in a
// workspace of its own.
func (m *Model) graphLogits(g *Graph, idx []int) ([]float32, error) {
	if err := m.checkGraph(g, idx); err != nil {
		return nil, err
	}
	if err := m.checkParams(false); err != nil {
		return nil, err
	}
	n := g.Nodes()
	ws := m.newWorkspace(n, modeInfer)
	return m.forward(ws, &pass{adj: g.Adj}, g.X[:n*m.Features()], n), nil
}

// checkGraph validates g and the node indices idx for m.
func (m *Model) checkGraph(g *Graph, idx []int) error {
	if m.Spec.IsExternal() {
		return fmt.Errorf("model %q: %w", m.Spec.Name, ErrExternalModel)
	}
	if !m.Spec.IsGraph() {
		return fmt.Errorf("model has no graph layers: %w", ErrNeedsGraph)
	}
	if g == nil {
		return fmt.Errorf("nil graph: %w", ErrShape)
	}
	n := g.Nodes()
	if g.Features != m.Features() || len(g.X) != n*m.Features() {
		return fmt.Errorf("graph has %d values of %d features for %d nodes, model expects %d features: %w",
			len(g.X), g.Features, n, m.Features(), ErrShape)
	}
	if g.Classes > m.Classes() {
		return fmt.Errorf("graph has %d classes, model outputs %d: %w", g.Classes, m.Classes(), ErrShape)
	}
	for i, y := range g.Y {
		if y < 0 || int(y) >= m.Classes() {
			return fmt.Errorf("node %d has class %d outside [0, %d): %w", i, y, m.Classes(), ErrShape)
		}
	}
	for _, i := range idx {
		if i < 0 || i >= n {
			return fmt.Errorf("node index %d outside %d nodes: %w", i, n, ErrShape)
		}
	}
	return checkCSR(g.Adj, n)
}
