package main

import (
	"context"
	"errors"
	"fmt"
	"github.com/fedge/fedge/internal/workpool"
	"io"
	"math"
	"math/rand/v2"
	"time"

	"github.com/fedge/fedge/crypto/secagg"
	"github.com/fedge/fedge/examples/internal/fedsim"
	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/protocol/encoding"
	"github.com/fedge/fedge/tensor"
	"github.com/fedge/fedge/tensor/data"
)

// Paper figures: rounds of FedAvg to reach 97% test accuracy with the 2NN,
// E = 1, B = 10, C = 0.1 (McMahan et al. 2017, Table 2).
const (
	paperIID          = 87
	paperPathological = 664
)

// run is one simulation's settings.
type run struct {
	partition string // "iid" or "pathological"
	secure    bool
	compress  string // "none", "int8", "topk"
	topk      float64
	seed      uint64
}

// name identifies the run in file names and tables.
func (r run) name() string {
	s := r.partition
	if r.secure {
		s += "-secagg"
	} else {
		s += "-plain"
	}
	if r.compress != "none" {
		s += "-" + r.compress
	}
	return s
}

// file is the run's CSV file name.
func (r run) file() string { return fmt.Sprintf("%s-seed%d.csv", r.name(), r.seed) }

// roundLine is one round's outcome.
type roundLine struct {
	Round     int
	Accuracy  float64 // test accuracy of the server's model
	Served    float64 // test accuracy of the model clients download (= Accuracy without compression)
	TrainLoss float64 // mean local training loss, learned through the aggregate
	Seconds   float64
	Survivors int
	BytesUp   int64 // client → server bytes of the aggregation (masked inputs, keys, shares)
	BytesDown int64 // server → client bytes: model broadcast to the selected clients, SecAgg replies
}

// result is a run's curve.
type result struct {
	run     run
	lines   []roundLine
	reached int // first round whose served accuracy reached the target; 0 if none
	failed  int // rounds that failed (too few SecAgg+ survivors)
	wall    time.Duration
}

// best returns the highest served accuracy and its round.
func (r *result) best() (float64, int) {
	var acc float64
	var at int
	for _, l := range r.lines {
		if l.Served > acc {
			acc, at = l.Served, l.Round
		}
	}
	return acc, at
}

// env is the data every run shares.
type env struct {
	train, test *tensor.Dataset
	parts       map[string][]*tensor.Dataset // partition name → client datasets
}

// clientData cuts the training set into the clients' datasets.
func (e *env) clientData(partition string, clients int, seed uint64) ([]*tensor.Dataset, error) {
	key := fmt.Sprintf("%s/%d", partition, seed)
	if ds, ok := e.parts[key]; ok {
		return ds, nil
	}
	var idx [][]int
	switch partition {
	case "iid":
		idx = data.PartitionIID(e.train.Len(), clients, seed)
	case "pathological":
		var err error
		if idx, err = data.PartitionPathological(e.train.Y, clients, 2, seed); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unknown partition %q (want iid or pathological)", partition)
	}
	ds := make([]*tensor.Dataset, clients)
	for i, p := range idx {
		ds[i] = e.train.Subset(p)
	}
	e.parts[key] = ds
	return ds, nil
}

// broadcaster produces the model clients start each round from, as they
// receive it over the wire.
type broadcaster struct {
	compress string
	topk     float64
	enc      encoding.Encoder
	dec      encoding.Decoder
	held     []float32 // what the fleet holds (top-k: the previous broadcasts)
	blob     []byte
}

// receivers is how many clients must receive each broadcast: the selected
// ones, or, for top-k deltas against the fleet's copy, every client (a
// client that misses one would need a full download).
func (b *broadcaster) receivers(selected, fleet int) int {
	if b.compress == "topk" {
		return fleet
	}
	return selected
}

// next encodes the server's parameters w for download and returns what
// clients decode, and the blob size.
func (b *broadcaster) next(w []float32) ([]float32, int, error) {
	var opts encoding.Options
	var base []float32
	switch b.compress {
	case "none":
		return w, 4 * len(w), nil
	case "int8":
		opts = encoding.Options{Codec: encoding.Int8}
	case "topk":
		if b.held == nil {
			// The first download is the whole model, lossless.
			b.held = append([]float32(nil), w...)
			return b.held, encoding.HeaderSize + 4*len(w), nil
		}
		// Delta against the model the fleet holds, only the largest
		// entries, int8, deflated; what is not sent stays in w − held and
		// goes out in later rounds (error feedback by construction).
		opts = encoding.Options{Codec: encoding.Int8, TopK: b.topk, Compressor: encoding.Flate}
		base = b.held
	default:
		return nil, 0, fmt.Errorf("unknown compression %q", b.compress)
	}
	var err error
	if b.blob, err = b.enc.AppendEncode(b.blob[:0], w, base, opts); err != nil {
		return nil, 0, err
	}
	out, err := b.dec.Decode(nil, b.blob, base)
	if err != nil {
		return nil, 0, err
	}
	b.held = out
	return out, len(b.blob), nil
}

// simulate runs FedAvg rounds until the target or the round cap.
func simulate(ctx context.Context, cfg *config, e *env, r run, out io.Writer) (*result, error) {
	start := time.Now()
	clients, err := e.clientData(r.partition, cfg.clients, r.seed)
	if err != nil {
		return nil, err
	}
	spec, err := tensor.NamedSpec(tensor.Spec2NN)
	if err != nil {
		return nil, err
	}
	global, err := tensor.NewModel(spec, r.seed)
	if err != nil {
		return nil, err
	}
	fleet, err := fedsim.NewFleet("fedavg-mnist/"+r.name(), len(clients))
	if err != nil {
		return nil, err
	}
	agg := &fedsim.Aggregator{Fleet: fleet, Secure: r.secure}
	perRound := max(1, int(cfg.fraction*float64(len(clients))+0.5))
	perRound = min(len(clients), int(math.Ceil(float64(perRound)*(1+cfg.overSelect)))) // as JobSpec.OverSelect
	if r.secure && cfg.dropout > 0 {
		// Size the neighbour graph for the dropout rate, as an operator
		// who expects it would (SecAggSpec.K).
		agg.Neighbours = secagg.NeighboursForDropout(perRound, cfg.dropout, 1e-3)
	}
	workers := make([]*tensor.Model, cfg.workers)
	for i := range workers {
		workers[i] = global.Clone()
	}
	bc := &broadcaster{compress: r.compress, topk: r.topk}
	startParams, blobSize, err := bc.next(global.Params)
	if err != nil {
		return nil, err
	}
	res := &result{run: r}
	pick := rand.New(rand.NewPCG(r.seed, 0x5e1ec7))
	fmt.Fprintf(out, "%s: 2nn, %d clients, %d per round, E=%d B=%d lr=%g, secagg=%v, download %s, seed %d\n",
		r.name(), len(clients), perRound, cfg.epochs, cfg.batch, cfg.lr, r.secure, r.compress, r.seed)
	for round := 1; round <= cfg.rounds; round++ {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		t0 := time.Now()
		selected := pick.Perm(len(clients))[:perRound]
		ups := make([]fedsim.Update, perRound)
		err := workpool.Parallel(ctx, perRound, cfg.workers, func(w, i int) error {
			c := selected[i]
			m := workers[w]
			copy(m.Params, startParams)
			stats, err := tensor.Train(ctx, m, clients[c], tensor.TrainConfig{
				Epochs: cfg.epochs, BatchSize: cfg.batch, LR: float32(cfg.lr),
				Seed: r.seed ^ uint64(round)<<20 ^ uint64(c),
			})
			if err != nil {
				return fmt.Errorf("client %d: %w", c, err)
			}
			delta := make([]float32, len(m.Params), len(m.Params)+protocol.UpdateMetrics)
			for j := range delta {
				delta[j] = m.Params[j] - startParams[j]
			}
			ups[i] = fedsim.Update{Client: c, Examples: clients[c].Len(),
				Vector: protocol.AppendUpdateMetrics(delta, 1, stats.Loss, stats.Accuracy)}
			return nil
		})
		if err != nil {
			return res, err
		}
		for i := range ups {
			ups[i].Drop = pick.Float64() < cfg.dropout
		}
		mean, st, err := agg.Aggregate(round, ups)
		var loss float64
		switch {
		case errors.Is(err, secagg.ErrTooFewSurvivors) || errors.Is(err, fedsim.ErrNoUpdates):
			// Like the coordinator: the round fails, revealing nothing,
			// and the model stays as it was.
			fmt.Fprintf(out, "%s round %4d  failed: %v\n", r.name(), round, err)
			st.Survivors = 0
			res.failed++
		case err != nil:
			return res, fmt.Errorf("round %d: %w", round, err)
		default:
			var delta []float32
			delta, loss, _ = protocol.SplitUpdateMetrics(mean, 1)
			for j, d := range delta {
				global.Params[j] += d // FedAvg: server learning rate 1
			}
		}
		line := roundLine{Round: round, TrainLoss: loss, Survivors: st.Survivors, BytesUp: st.BytesUp,
			BytesDown: st.BytesDown + int64(bc.receivers(perRound, len(clients))*blobSize)}
		if line.Accuracy, err = accuracy(global, e.test); err != nil {
			return res, err
		}
		line.Served = line.Accuracy
		if startParams, blobSize, err = bc.next(global.Params); err != nil {
			return res, err
		}
		if r.compress != "none" {
			served := workers[0]
			copy(served.Params, startParams)
			if line.Served, err = accuracy(served, e.test); err != nil {
				return res, err
			}
		}
		line.Seconds = time.Since(t0).Seconds()
		res.lines = append(res.lines, line)
		printLine(out, r, line)
		if line.Served >= cfg.target {
			res.reached = round
			break
		}
	}
	res.wall = time.Since(start)
	if res.reached > 0 {
		fmt.Fprintf(out, "%s: reached %.1f%% test accuracy at round %d (%d failed rounds; %.0fs)\n", r.name(), 100*cfg.target, res.reached, res.failed, res.wall.Seconds())
	} else {
		acc, at := res.best()
		fmt.Fprintf(out, "%s: did not reach %.1f%% in %d rounds; best %.2f%% at round %d (%.0fs)\n", r.name(), 100*cfg.target, cfg.rounds, 100*acc, at, res.wall.Seconds())
	}
	return res, nil
}

func accuracy(m *tensor.Model, test *tensor.Dataset) (float64, error) {
	met, err := tensor.Evaluate(m, test)
	if err != nil {
		return 0, err
	}
	return met.Accuracy(), nil
}

func printLine(out io.Writer, r run, l roundLine) {
	served := ""
	if r.compress != "none" {
		served = fmt.Sprintf("  served %6.2f%%", 100*l.Served)
	}
	fmt.Fprintf(out, "%s round %4d  acc %6.2f%%%s  loss %.4f  %2d clients  up %6.2f MB  down %6.2f MB  %5.2fs\n",
		r.name(), l.Round, 100*l.Accuracy, served, l.TrainLoss, l.Survivors, float64(l.BytesUp)/1e6, float64(l.BytesDown)/1e6, l.Seconds)
}
