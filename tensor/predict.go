package tensor

import (
	"fmt"
	"runtime"
	"sync"
)

// Metrics are the sums an evaluation produces. They add across datasets
// (and across agents under secure aggregation), so they carry sums, not
// ratios.
type Metrics struct {
	Correct int     // examples whose most probable class is the label
	Total   int     // examples evaluated
	LossSum float64 // summed cross-entropy (natural log)
}

// Accuracy returns Correct/Total, or 0 when Total is 0.
func (m Metrics) Accuracy() float64 {
	if m.Total == 0 {
		return 0
	}
	return float64(m.Correct) / float64(m.Total)
}

// Loss returns the mean cross-entropy, or 0 when Total is 0.
func (m Metrics) Loss() float64 {
	if m.Total == 0 {
		return 0
	}
	return m.LossSum / float64(m.Total)
}

// Add returns the sums of m and o.
func (m Metrics) Add(o Metrics) Metrics {
	return Metrics{Correct: m.Correct + o.Correct, Total: m.Total + o.Total, LossSum: m.LossSum + o.LossSum}
}

// Predict returns the class probabilities (softmax of the logits) of the n
// examples in x, row-major n × Classes(). x holds n × Features() values in
// the Spec's input layout. It is safe for concurrent use: parameters are
// only read, and each call works in pooled scratch memory.
func (m *Model) Predict(x []float32, n int) ([]float32, error) {
	if n < 0 {
		return nil, fmt.Errorf("tensor.Model.Predict: negative count %d: %w", n, ErrShape)
	}
	dst := make([]float32, n*m.Classes())
	if err := m.PredictInto(dst, x, n); err != nil {
		return nil, err
	}
	return dst, nil
}

// PredictInto is Predict writing into dst, which must hold n × Classes()
// values. Apart from a few small bookkeeping values it allocates nothing
// once its pooled workspaces exist.
func (m *Model) PredictInto(dst, x []float32, n int) error {
	if err := m.checkInputs(x, n); err != nil {
		return fmt.Errorf("tensor.Model.PredictInto: %w", err)
	}
	c := m.Classes()
	if len(dst) < n*c {
		return fmt.Errorf("tensor.Model.PredictInto: dst holds %d values, need %d: %w", len(dst), n*c, ErrShape)
	}
	f := m.Features()
	m.chunked(n, func(ws *workspace, ps *pass, e0, e1 int) {
		logits := m.forward(ws, ps, m.input(ws, x[e0*f:e1*f], e1-e0), e1-e0)
		out := dst[e0*c : e1*c]
		copy(out, logits)
		softmaxRows(out, e1-e0, c)
	})
	return nil
}

// Evaluate returns the accuracy and loss sums of m over ds.
func Evaluate(m *Model, ds *Dataset) (Metrics, error) {
	if err := m.checkDataset(ds); err != nil {
		return Metrics{}, fmt.Errorf("tensor.Evaluate: %w", err)
	}
	n, f, c := ds.Len(), m.Features(), m.Classes()
	chunks := (n + m.predictCap - 1) / m.predictCap
	parts := make([]Metrics, chunks)
	m.chunked(n, func(ws *workspace, ps *pass, e0, e1 int) {
		logits := m.forward(ws, ps, m.input(ws, ds.X[e0*f:e1*f], e1-e0), e1-e0)
		loss, correct := softmaxXent(logits, c, ds.Y[e0:e1], nil, e1-e0, nil, 1)
		parts[e0/m.predictCap] = Metrics{Correct: correct, Total: e1 - e0, LossSum: loss}
	})
	var sum Metrics
	for _, p := range parts { // in chunk order: the same sum on every machine
		sum = sum.Add(p)
	}
	return sum, nil
}

// chunked runs fn over the n examples in chunks of at most predictCap,
// on up to GOMAXPROCS goroutines, each with its own pooled workspace.
func (m *Model) chunked(n int, fn func(ws *workspace, ps *pass, e0, e1 int)) {
	fanOut(n, m.predictCap, func(next func() (int, int, bool)) {
		ws := m.getInference()
		ps := &pass{}
		for e0, e1, ok := next(); ok; e0, e1, ok = next() {
			fn(ws, ps, e0, e1)
		}
		m.pool.Put(ws)
	})
}

// fanOut splits n examples into chunks of at most size and runs worker on
// up to GOMAXPROCS goroutines (the calling one included); each worker
// takes its chunks from next, a fixed interleaving (worker w gets chunks
// w, w+workers, …) so results land in the same places on every machine.
func fanOut(n, size int, worker func(next func() (e0, e1 int, ok bool))) {
	chunks := (n + size - 1) / size
	if chunks == 0 {
		return
	}
	workers := min(chunks, runtime.GOMAXPROCS(0))
	run := func(w int) {
		i := w
		worker(func() (int, int, bool) {
			if i >= chunks {
				return 0, 0, false
			}
			e0 := i * size
			i += workers
			return e0, min(n, e0+size), true
		})
	}
	var wg sync.WaitGroup
	for w := 1; w < workers; w++ {
		wg.Go(func() { run(w) })
	}
	run(0)
	wg.Wait()
}

// checkInputs validates a batch of plain examples for m.
func (m *Model) checkInputs(x []float32, n int) error {
	if m.Spec.IsExternal() {
		return fmt.Errorf("model %q: %w", m.Spec.Name, ErrExternalModel)
	}
	if m.Spec.IsGraph() {
		return ErrNeedsGraph
	}
	if err := m.checkParams(false); err != nil {
		return err
	}
	if n < 0 || len(x) != n*m.Features() {
		return fmt.Errorf("%d values for %d examples of %d features: %w", len(x), n, m.Features(), ErrShape)
	}
	return nil
}

// checkDataset validates ds for m: its width, its classes and its labels.
func (m *Model) checkDataset(ds *Dataset) error {
	if m.Spec.IsExternal() {
		return fmt.Errorf("model %q: %w", m.Spec.Name, ErrExternalModel)
	}
	if ds == nil {
		return fmt.Errorf("nil dataset: %w", ErrShape)
	}
	if err := ds.Validate(); err != nil {
		return fmt.Errorf("%w: %w", err, ErrShape)
	}
	if ds.Features() != m.Features() {
		return fmt.Errorf("dataset has %d features, model expects %d: %w", ds.Features(), m.Features(), ErrShape)
	}
	if ds.Classes > m.Classes() {
		return fmt.Errorf("dataset has %d classes, model outputs %d: %w", ds.Classes, m.Classes(), ErrShape)
	}
	return m.checkInputs(ds.X, ds.Len())
}
