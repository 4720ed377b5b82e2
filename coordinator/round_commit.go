package coordinator

import (
	"bufio"
	"fmt"

	"github.com/fedge/fedge/tensor"
)

// statelessStrategy is a Strategy whose step of each coordinate depends
// on that coordinate alone (it keeps no memory between rounds), so it
// can be applied a chunk of the model at a time.
type statelessStrategy interface {
	stateless() bool
}

// stateless implements statelessStrategy: plain FedAvg (and FedProx,
// and the robust strategies' step) keeps no momentum.
func (s *fedAvgM) stateless() bool { return s.momentum == 0 }

// modelHeader returns the parameter count and record of a model version,
// reading only the start of its file.
func (e *Engine) modelHeader(version uint64) (int, *ModelRecord, error) {
	b, err := e.fsm.openModel(version)
	if err != nil {
		return 0, nil, fmt.Errorf("coordinator.modelHeader: %d: %w", version, err)
	}
	defer b.Close()
	_, n, err := tensor.ReadModelHeader(bufio.NewReader(b.file()), int64(b.rec.Size))
	if err != nil {
		return 0, nil, fmt.Errorf("coordinator.modelHeader: %d: %w", version, err)
	}
	rec := b.rec
	return n, &rec, nil
}

// stepModel applies the round's strategy to the job's current version
// and returns the next model, with the lossy push's bytes and residual
// when the job asks for one. d is the mean delta, in the ring sum's
// memory. A stateless strategy without a lossy push is applied while the
// parent's parameters stream from its blob, each chunk's result written
// over d, which becomes the next model's parameters: the leader holds
// one model-sized vector at the commit, as during the aggregation.
// Otherwise the parent is loaded and stepped in place (beside a copy
// when a lossy push needs the parent too).
func (e *Engine) stepModel(r *activeRound, job *JobRecord, strat Strategy, d []float32) (next *tensor.Model, push []byte, dropped []float32, err error) {
	opts, lossy := pushOptions(job.Spec.Push)
	if s, ok := strat.(statelessStrategy); ok && s.stateless() && !lossy {
		err = r.timed(func() (err error) { next, err = e.stepStreamed(job.Model, strat, d); return })
		return next, nil, nil, err
	}
	model, _, err := e.loadModel(job.Model)
	if err != nil {
		return nil, nil, nil, err
	}
	next = model
	if lossy {
		next = model.Clone()
	}
	err = r.timed(func() error {
		if err := strat.Apply(next.Params, d); err != nil {
			return err
		}
		var err error
		if lossy {
			push, dropped, err = quantizePush(next.Params, model.Params, e.pushResidual(job.ID, job.Model), opts)
		}
		return err
	})
	return next, push, dropped, err
}

// stepStreamed applies a stateless strategy to version's parameters read
// from its blob a chunk at a time, writing the next parameters over d,
// and returns the model over d.
func (e *Engine) stepStreamed(version uint64, strat Strategy, d []float32) (*tensor.Model, error) {
	b, err := e.fsm.openModel(version)
	if err != nil {
		return nil, fmt.Errorf("coordinator.stepStreamed: %d: %w", version, err)
	}
	defer b.Close()
	spec, err := tensor.ReadModelParams(bufio.NewReaderSize(b.file(), 1<<20), int64(b.rec.Size), func(off int, p []float32) error {
		if off+len(p) > len(d) {
			return fmt.Errorf("%w: model %d has more than the round's %d parameters", ErrStrategy, version, len(d))
		}
		dst := d[off : off+len(p)]
		if err := strat.Apply(p, dst); err != nil {
			return err
		}
		copy(dst, p)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("coordinator.stepStreamed: %d: %w", version, err)
	}
	m, err := tensor.ModelWith(spec, d)
	if err != nil {
		return nil, fmt.Errorf("coordinator.stepStreamed: %d: %w", version, err)
	}
	return m, nil
}
