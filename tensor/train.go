package tensor

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// TrainConfig configures Train and TrainGraph. Zero values mean the
// documented defaults.
type TrainConfig struct {
	// Epochs is the number of passes over the data (for TrainGraph, the
	// number of full-batch steps); if zero, 1.
	Epochs int
	// BatchSize is the number of examples per optimizer step; if zero, 32;
	// capped at the dataset size. TrainGraph ignores it.
	BatchSize int
	// Seed drives the shuffling and the dropout masks: the same model,
	// data, config and seed give the same parameters bit for bit.
	Seed uint64
	// NoShuffle keeps the dataset order in every epoch.
	NoShuffle bool
	// Optimizer updates the parameters after each batch; if nil, plain
	// SGD with LR. Pass the same optimizer to successive calls to keep its
	// momentum.
	Optimizer Optimizer
	// LR is the learning rate of the default optimizer; if zero, 0.01.
	LR float32
	// Progress, if set, is called on the training goroutine after every
	// ProgressEvery batches and at the end of each epoch.
	Progress func(TrainProgress)
	// ProgressEvery is the number of batches between Progress calls within
	// an epoch; if zero, Progress is called only at epoch ends.
	ProgressEvery int
	// Threads caps the goroutines this training's matrix products and
	// convolution shards run on, for this call alone (a job's share of
	// the machine, while other calls — serving — keep theirs); zero
	// means runtime.GOMAXPROCS.
	Threads int
}

// TrainProgress reports how far training has come.
type TrainProgress struct {
	Epoch     int     // current epoch, from 1
	Batch     int     // batches done in this epoch
	Batches   int     // batches per epoch
	Examples  int64   // examples seen since the call started
	Loss      float64 // mean training loss over this epoch so far
	Accuracy  float64 // training accuracy over this epoch so far (with dropout active)
	EpochDone bool    // the epoch just ended
	Elapsed   time.Duration
}

// TrainStats summarizes a training call.
type TrainStats struct {
	Epochs   int     // epochs completed
	Steps    int     // optimizer steps taken
	Examples int64   // examples processed
	Loss     float64 // mean training loss over the last epoch run
	Accuracy float64 // training accuracy over the last epoch run
	Duration time.Duration
	// Workers is the most goroutines one matrix product or shard
	// fan-out of the training ran on (at most TrainConfig.Threads).
	Workers int
}

func (c TrainConfig) withDefaults(n int) TrainConfig {
	if c.Epochs <= 0 {
		c.Epochs = 1
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 32
	}
	c.BatchSize = max(1, min(c.BatchSize, n))
	if c.Optimizer == nil {
		c.Optimizer = NewSGD(SGDConfig{LR: c.LR})
	}
	return c
}

// Train runs minibatch training of m on ds: for each epoch it shuffles the
// examples with a generator seeded from cfg.Seed, and for each batch runs
// forward, the softmax cross-entropy (mean over the batch), backward, and
// an optimizer step. The last batch of an epoch may be smaller. It checks
// ctx between batches and returns ctx's error, wrapped, with the stats so
// far. Steady-state batches allocate nothing.
func Train(ctx context.Context, m *Model, ds *Dataset, cfg TrainConfig) (TrainStats, error) {
	start := time.Now()
	if err := m.checkDataset(ds); err != nil {
		return TrainStats{}, fmt.Errorf("tensor.Train: %w", err)
	}
	if err := m.checkParams(true); err != nil {
		return TrainStats{}, fmt.Errorf("tensor.Train: %w", err)
	}
	n := ds.Len()
	if n == 0 {
		return TrainStats{}, nil
	}
	cfg = cfg.withDefaults(n)
	B, f := cfg.BatchSize, m.Features()
	ws := m.trainWorkspace(B)
	ps := &pass{train: true, rng: rand.New(rand.NewPCG(cfg.Seed, streamDropout)), threads: cfg.Threads}
	shuffle := rand.New(rand.NewPCG(cfg.Seed, streamShuffle))
	perm := make([]int32, n)
	for i := range perm {
		perm[i] = int32(i)
	}
	batches := (n + B - 1) / B
	var st TrainStats
	for epoch := 1; epoch <= cfg.Epochs; epoch++ {
		if !cfg.NoShuffle {
			shuffle.Shuffle(n, func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
		}
		var lossSum float64
		correct, seen := 0, 0
		for b := range batches {
			if err := ctx.Err(); err != nil {
				st.Duration, st.Workers = time.Since(start), int(ps.peak.Load())
				return st, fmt.Errorf("tensor.Train: epoch %d batch %d: %w", epoch, b, err)
			}
			idx := perm[b*B : min(n, (b+1)*B)]
			k := len(idx)
			for j, i := range idx {
				m.putExample(ws.in[j*f:(j+1)*f], ds.X[int(i)*f:(int(i)+1)*f])
				ws.labels[j] = ds.Y[i]
			}
			loss, c := m.trainStep(ws, ps, ws.in[:k*f], ws.labels[:k], nil, k)
			if math.IsNaN(loss) || math.IsInf(loss, 0) {
				st.Duration, st.Workers = time.Since(start), int(ps.peak.Load())
				return st, fmt.Errorf("tensor.Train: epoch %d batch %d: loss %v: %w", epoch, b, loss, ErrDiverged)
			}
			cfg.Optimizer.Step(m.Params, m.Grads)
			lossSum += loss
			correct += c
			seen += k
			st.Steps++
			st.Examples += int64(k)
			st.Loss, st.Accuracy = lossSum/float64(seen), float64(correct)/float64(seen)
			if cfg.Progress != nil && (b+1 == batches || cfg.ProgressEvery > 0 && (b+1)%cfg.ProgressEvery == 0) {
				cfg.Progress(TrainProgress{Epoch: epoch, Batch: b + 1, Batches: batches, Examples: st.Examples,
					Loss: st.Loss, Accuracy: st.Accuracy, EpochDone: b+1 == batches, Elapsed: time.Since(start)})
			}
		}
		st.Epochs = epoch
	}
	st.Duration, st.Workers = time.Since(start), int(ps.peak.Load())
	return st, nil
}

// trainWorkspace returns the model's cached training workspace for
// batches of up to n, rebuilding it when the size changes.
func (m *Model) trainWorkspace(n int) *workspace {
	if m.trainWS == nil || m.trainWS.cap != n {
		m.trainWS = m.newWorkspace(n, modeTrain)
	}
	return m.trainWS
}

// putExample copies one example into dst in layer layout (channels-last
// when the model needs it).
func (m *Model) putExample(dst, src []float32) {
	if !m.hwc {
		copy(dst, src)
		return
	}
	c := m.Spec.Input[0]
	hw := len(src) / c
	for ch := range c {
		s := src[ch*hw : (ch+1)*hw]
		for p, v := range s {
			dst[p*c+ch] = v
		}
	}
}
