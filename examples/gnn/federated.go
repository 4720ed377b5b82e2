package main

import (
	"context"
	"fmt"
	"github.com/fedge/fedge/internal/workpool"
	"io"
	"time"

	"github.com/fedge/fedge/examples/internal/fedsim"
	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/tensor"
)

// trainLocalOnly trains one model per agent on its own subgraph alone.
func trainLocalOnly(ctx context.Context, cfg *config, spec tensor.Spec, sp *splits, steps int) ([]*tensor.Model, error) {
	locals := make([]*tensor.Model, len(sp.subs))
	err := workpool.Parallel(ctx, len(sp.subs), cfg.workers, func(_, c int) error {
		m, err := tensor.NewModel(spec, cfg.seed)
		if err != nil {
			return err
		}
		if _, err := tensor.TrainGraph(ctx, m, sp.subs[c], sp.localTrain[c], trainConfig(cfg, steps, cfg.seed+uint64(c))); err != nil {
			return fmt.Errorf("local-only agent %d: %w", c, err)
		}
		locals[c] = m
		return nil
	})
	return locals, err
}

// federate runs FedAvg: every round each agent trains the global GCN on
// its subgraph for cfg.localEpochs steps, the deltas (weighted by labelled
// nodes) are averaged under SecAgg+ and added to the global model.
func federate(ctx context.Context, cfg *config, spec tensor.Spec, g *tensor.Graph, sp *splits, out io.Writer) (*tensor.Model, error) {
	global, err := tensor.NewModel(spec, cfg.seed)
	if err != nil {
		return nil, err
	}
	fleet, err := fedsim.NewFleet("gnn", len(sp.subs))
	if err != nil {
		return nil, err
	}
	agg := &fedsim.Aggregator{Fleet: fleet, Secure: cfg.secure}
	workers := make([]*tensor.Model, cfg.workers)
	for i := range workers {
		workers[i] = global.Clone()
	}
	fmt.Fprintf(out, "%5s %9s %18s %18s %9s %7s\n", "round", "loss", "held-out (full)", "held-out (parts)", "bytes up", "secs")
	for round := 1; round <= cfg.rounds; round++ {
		t0 := time.Now()
		ups := make([]fedsim.Update, len(sp.subs))
		err := workpool.Parallel(ctx, len(sp.subs), cfg.workers, func(w, c int) error {
			m := workers[w]
			copy(m.Params, global.Params)
			stats, err := tensor.TrainGraph(ctx, m, sp.subs[c], sp.localTrain[c],
				trainConfig(cfg, cfg.localEpochs, cfg.seed^uint64(round)<<16^uint64(c)))
			if err != nil {
				return fmt.Errorf("agent %d: %w", c, err)
			}
			delta := make([]float32, len(m.Params), len(m.Params)+protocol.UpdateMetrics)
			for j := range delta {
				delta[j] = m.Params[j] - global.Params[j]
			}
			ups[c] = fedsim.Update{Client: c, Examples: len(sp.localTrain[c]),
				Vector: protocol.AppendUpdateMetrics(delta, 1, stats.Loss, stats.Accuracy)}
			return nil
		})
		if err != nil {
			return nil, err
		}
		mean, st, err := agg.Aggregate(round, ups)
		if err != nil {
			return nil, fmt.Errorf("round %d: %w", round, err)
		}
		delta, loss, _ := protocol.SplitUpdateMetrics(mean, 1)
		for j, d := range delta {
			global.Params[j] += d
		}
		full, parts, err := evaluate(global, g, sp)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(out, "%5d %9.4f %17.2f%% %17.2f%% %9d %7.2f\n",
			round, loss, 100*full.Accuracy(), 100*parts.Accuracy(), st.BytesUp, time.Since(t0).Seconds())
	}
	return global, nil
}
