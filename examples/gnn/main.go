package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"runtime"
	"time"

	"github.com/fedge/fedge/tensor"
	"github.com/fedge/fedge/tensor/data"
)

// config is what the flags set.
type config struct {
	nodes, classes, features int
	degree, homophily, noise float64
	agents                   int
	partition                string
	alpha                    float64
	labelled, heldOut        float64
	hidden                   int
	rounds, localEpochs      int
	lr, weightDecay          float64
	secure                   bool
	seed                     uint64
	workers                  int
}

func main() {
	var cfg config
	flag.IntVar(&cfg.nodes, "nodes", 4000, "nodes of the synthetic graph")
	flag.IntVar(&cfg.classes, "classes", 5, "node classes")
	flag.IntVar(&cfg.features, "features", 64, "features per node")
	flag.Float64Var(&cfg.degree, "degree", 8, "average degree")
	flag.Float64Var(&cfg.homophily, "homophily", 0.8, "probability that an edge joins two nodes of the same class")
	flag.Float64Var(&cfg.noise, "noise", 0.8, "feature noise around the class centroids (0.8: features alone are weakly informative)")
	flag.IntVar(&cfg.agents, "agents", 5, "agents holding disjoint parts of the graph")
	flag.StringVar(&cfg.partition, "partition", "iid", "how nodes are dealt to agents: iid or dirichlet (label-skewed, -alpha)")
	flag.Float64Var(&cfg.alpha, "alpha", 0.5, "Dirichlet concentration of -partition dirichlet")
	flag.Float64Var(&cfg.labelled, "labelled", 0.1, "fraction of nodes whose labels are used for training")
	flag.Float64Var(&cfg.heldOut, "heldout", 0.3, "fraction of nodes held out for evaluation (never trained on)")
	flag.IntVar(&cfg.hidden, "hidden", 16, "hidden units of the GCN")
	flag.IntVar(&cfg.rounds, "rounds", 40, "federated rounds")
	flag.IntVar(&cfg.localEpochs, "E", 5, "full-batch Adam steps per agent per round")
	flag.Float64Var(&cfg.lr, "lr", 0.01, "Adam learning rate")
	flag.Float64Var(&cfg.weightDecay, "wd", 5e-4, "L2 weight decay")
	flag.BoolVar(&cfg.secure, "secagg", true, "aggregate with SecAgg+ (false: plain weighted mean)")
	flag.Uint64Var(&cfg.seed, "seed", 1, "seed of the graph, the splits, the models and dropout")
	flag.IntVar(&cfg.workers, "workers", runtime.GOMAXPROCS(0), "goroutines training agents in parallel")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, &cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "gnn:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg *config, out io.Writer) error {
	start := time.Now()
	if cfg.agents < 3 && cfg.secure {
		return errors.New("SecAgg+ needs at least 3 agents")
	}
	if cfg.labelled <= 0 || cfg.heldOut <= 0 || cfg.labelled+cfg.heldOut > 1 {
		return errors.New("-labelled and -heldout must be positive and sum to at most 1")
	}
	g, err := data.SBMConfig{
		Nodes: cfg.nodes, Classes: cfg.classes, Features: cfg.features,
		AvgDegree: cfg.degree, Homophily: cfg.homophily, Noise: cfg.noise, Seed: cfg.seed,
	}.Generate()
	if err != nil {
		return err
	}
	sp, err := split(g, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "graph: %d nodes, %d undirected edges, %d classes, %d features; %d labelled for training, %d held out\n",
		g.Nodes(), undirectedEdges(g.Adj), g.Classes, g.Features, len(sp.train), len(sp.test))
	kept := 0
	for c, sub := range sp.subs {
		kept += undirectedEdges(sub.Adj)
		fmt.Fprintf(out, "  agent %d: %4d nodes, %4d edges, %3d labelled, %3d held out, classes %v\n",
			c, sub.Nodes(), undirectedEdges(sub.Adj), len(sp.localTrain[c]), len(sp.localTest[c]), classCounts(sub, sp.localTrain[c]))
	}
	fmt.Fprintf(out, "  %d of %d edges lie inside one agent's part; the rest cross parts and are lost to every agent\n", kept, undirectedEdges(g.Adj))

	spec := tensor.GCNSpec(g.Features, cfg.hidden, g.Classes)
	steps := cfg.rounds * cfg.localEpochs

	fmt.Fprintf(out, "\ncentralized: one GCN on the whole graph and every labelled node, %d Adam steps\n", steps)
	central, err := tensor.NewModel(spec, cfg.seed)
	if err != nil {
		return err
	}
	if _, err := tensor.TrainGraph(ctx, central, g, sp.train, trainConfig(cfg, steps, cfg.seed)); err != nil {
		return fmt.Errorf("centralized: %w", err)
	}

	fmt.Fprintf(out, "\nlocal-only: each agent alone on its subgraph, %d Adam steps\n", steps)
	locals, err := trainLocalOnly(ctx, cfg, spec, sp, steps)
	if err != nil {
		return err
	}

	fmt.Fprintf(out, "\nfederated: %d agents, FedAvg over %d rounds of %d local steps, SecAgg+ %v\n", cfg.agents, cfg.rounds, cfg.localEpochs, cfg.secure)
	fed, err := federate(ctx, cfg, spec, g, sp, out)
	if err != nil {
		return err
	}

	fmt.Fprintf(out, "\naccuracy on held-out nodes (never trained on):\n")
	fmt.Fprintf(out, "%-44s %18s %22s\n", "model", "in the full graph", "in the agents' parts")
	row := func(name string, full, parts tensor.Metrics) {
		fmt.Fprintf(out, "%-44s %17.2f%% %21.2f%%\n", name, 100*full.Accuracy(), 100*parts.Accuracy())
	}
	cFull, cParts, err := evaluate(central, g, sp)
	if err != nil {
		return err
	}
	row("centralized (whole graph, all labels)", cFull, cParts)
	fFull, fParts, err := evaluate(fed, g, sp)
	if err != nil {
		return err
	}
	sec := "plain mean"
	if cfg.secure {
		sec = "SecAgg+"
	}
	row(fmt.Sprintf("federated (%d agents, %s)", cfg.agents, sec), fFull, fParts)
	var lFull, lOwn tensor.Metrics
	worst, best := 1.0, 0.0
	for c, m := range locals {
		full, err := tensor.EvaluateGraph(m, g, sp.test)
		if err != nil {
			return err
		}
		own, err := tensor.EvaluateGraph(m, sp.subs[c], sp.localTest[c])
		if err != nil {
			return err
		}
		lFull, lOwn = lFull.Add(full), lOwn.Add(own)
		worst, best = min(worst, own.Accuracy()), max(best, own.Accuracy())
	}
	row(fmt.Sprintf("local-only (each of %d agents alone, pooled)", len(locals)), lFull, lOwn)
	fmt.Fprintf(out, "local-only agents on their own held-out nodes range from %.2f%% to %.2f%%\n", 100*worst, 100*best)
	fmt.Fprintf(out, "done in %.1fs\n", time.Since(start).Seconds())
	return nil
}

// trainConfig is the local plan: full-batch Adam with weight decay.
func trainConfig(cfg *config, epochs int, seed uint64) tensor.TrainConfig {
	return tensor.TrainConfig{
		Epochs: epochs, Seed: seed,
		Optimizer: tensor.NewAdam(tensor.AdamConfig{LR: float32(cfg.lr), WeightDecay: float32(cfg.weightDecay)}),
	}
}

// evaluate returns m's metrics on the held-out nodes of the full graph and
// summed over the agents' held-out nodes in their own subgraphs.
func evaluate(m *tensor.Model, g *tensor.Graph, sp *splits) (full, parts tensor.Metrics, err error) {
	if full, err = tensor.EvaluateGraph(m, g, sp.test); err != nil {
		return full, parts, err
	}
	for c, sub := range sp.subs {
		met, err := tensor.EvaluateGraph(m, sub, sp.localTest[c])
		if err != nil {
			return full, parts, err
		}
		parts = parts.Add(met)
	}
	return full, parts, nil
}

// splits are the node sets of one experiment.
type splits struct {
	train, test           []int           // global node indices
	parts                 [][]int         // nodes of each agent
	subs                  []*tensor.Graph // each agent's subgraph
	localTrain, localTest [][]int         // per agent, local node indices
}

// split draws the labelled and held-out nodes, deals the nodes to agents and
// cuts the subgraphs.
func split(g *tensor.Graph, cfg *config) (*splits, error) {
	n := g.Nodes()
	r := rand.New(rand.NewPCG(cfg.seed, 0x9a7))
	role := make([]byte, n) // 't' train, 'h' held out, 0 unlabelled
	perm := r.Perm(n)
	nTrain, nTest := int(cfg.labelled*float64(n)), int(cfg.heldOut*float64(n))
	sp := &splits{}
	for i, v := range perm {
		switch {
		case i < nTrain:
			role[v] = 't'
		case i < nTrain+nTest:
			role[v] = 'h'
		}
	}
	for v, ro := range role {
		switch ro {
		case 't':
			sp.train = append(sp.train, v)
		case 'h':
			sp.test = append(sp.test, v)
		}
	}
	switch cfg.partition {
	case "iid":
		sp.parts = data.PartitionIID(n, cfg.agents, cfg.seed)
	case "dirichlet":
		var err error
		if sp.parts, err = data.PartitionDirichlet(g.Y, cfg.agents, cfg.alpha, cfg.seed, 20); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unknown partition %q (want iid or dirichlet)", cfg.partition)
	}
	var err error
	if sp.subs, err = data.SplitGraph(g, sp.parts); err != nil {
		return nil, err
	}
	sp.localTrain, sp.localTest = make([][]int, cfg.agents), make([][]int, cfg.agents)
	for c, part := range sp.parts {
		for i, v := range part {
			switch role[v] {
			case 't':
				sp.localTrain[c] = append(sp.localTrain[c], i)
			case 'h':
				sp.localTest[c] = append(sp.localTest[c], i)
			}
		}
		if len(sp.localTrain[c]) == 0 {
			return nil, fmt.Errorf("agent %d holds no labelled node; raise -labelled or lower -agents", c)
		}
	}
	return sp, nil
}

// undirectedEdges counts the edges of a normalized adjacency (self loops
// excluded, each edge stored in both directions).
func undirectedEdges(a *tensor.CSR) int {
	return (len(a.ColIdx) - a.Rows) / 2
}

// classCounts counts the labels of the nodes idx.
func classCounts(g *tensor.Graph, idx []int) []int {
	out := make([]int, g.Classes)
	for _, i := range idx {
		out[g.Y[i]]++
	}
	return out
}
