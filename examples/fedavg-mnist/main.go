package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"

	"github.com/fedge/fedge/internal/mnist"
	"github.com/fedge/fedge/tensor"
	"github.com/fedge/fedge/tensor/data"
)

// config is what the flags set.
type config struct {
	partition  string
	secure     bool
	compress   string
	topk       float64
	target     float64
	rounds     int
	seed       uint64
	lr         float64
	out        string
	table      bool
	seeds      int
	clients    int
	fraction   float64
	epochs     int
	batch      int
	dropout    float64
	overSelect float64
	workers    int
	dataDir    string
}

func main() {
	var cfg config
	flag.StringVar(&cfg.partition, "partition", "iid", "how MNIST is dealt to clients: iid or pathological (2 label-sorted shards of 300 per client)")
	flag.BoolVar(&cfg.secure, "secagg", false, "aggregate with SecAgg+ (clip 1, 16 bits, weights capped at 1024, as the coordinator does)")
	flag.StringVar(&cfg.compress, "compress", "none", "model download encoding: none, int8 (blockwise int8), topk (delta vs the fleet's copy, top -topk entries, int8, deflate)")
	flag.Float64Var(&cfg.topk, "topk", 0.1, "fraction of entries a topk download sends")
	flag.Float64Var(&cfg.target, "target", 0.97, "test accuracy to reach")
	flag.IntVar(&cfg.rounds, "rounds", 1000, "most rounds to run")
	flag.Uint64Var(&cfg.seed, "seed", 1, "seed of the partition, the initial model, client selection and shuffling")
	flag.Float64Var(&cfg.lr, "lr", 0.2, "clients' SGD learning rate (tuned over 0.05, 0.1, 0.2)")
	flag.StringVar(&cfg.out, "out", filepath.Join("docs", "fedavg"), "folder for the CSV curves, the plot and the table")
	flag.BoolVar(&cfg.table, "table", false, "run IID and pathological with SecAgg off and on, and IID with SecAgg and int8 or top-k downloads, then print a Markdown table next to the paper's")
	flag.IntVar(&cfg.seeds, "seeds", 1, "with -table, run every combination with this many seeds (-seed, -seed+1, ...) and report the median")
	flag.IntVar(&cfg.clients, "clients", 100, "number of clients (K)")
	flag.Float64Var(&cfg.fraction, "C", 0.1, "fraction of clients per round (C)")
	flag.IntVar(&cfg.epochs, "E", 1, "local epochs (E)")
	flag.IntVar(&cfg.batch, "B", 10, "local minibatch size (B)")
	flag.Float64Var(&cfg.dropout, "dropout", 0, "probability that a selected client vanishes after sharing its SecAgg keys")
	flag.Float64Var(&cfg.overSelect, "overselect", 0, "select this fraction more clients per round, against dropouts (as the job spec's over_select)")
	flag.IntVar(&cfg.workers, "workers", runtime.GOMAXPROCS(0), "goroutines training clients in parallel")
	flag.StringVar(&cfg.dataDir, "data", "", "folder of the MNIST IDX files (default: the GoMNIST module's)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := runMain(ctx, &cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "fedavg-mnist:", err)
		os.Exit(1)
	}
}

func runMain(ctx context.Context, cfg *config, out io.Writer) error {
	if cfg.workers < 1 {
		return errors.New("-workers must be at least 1")
	}
	if cfg.topk <= 0 || cfg.topk > 1 {
		return errors.New("-topk must lie in (0, 1]")
	}
	dir := cfg.dataDir
	if dir == "" {
		d, err := mnist.Dir(ctx)
		if err != nil {
			return err
		}
		dir = d
	}
	train, test, err := data.LoadMNIST(dir)
	if err != nil {
		return err
	}
	e := &env{train: train, test: test, parts: map[string][]*tensor.Dataset{}}
	if err := os.MkdirAll(cfg.out, 0o755); err != nil {
		return err
	}
	if !cfg.table {
		r := run{partition: cfg.partition, secure: cfg.secure, compress: cfg.compress, topk: cfg.topk, seed: cfg.seed}
		res, err := simulate(ctx, cfg, e, r, out)
		if res != nil && len(res.lines) > 0 {
			if werr := writeOutputs(cfg, []*result{res}, r.name(), out); werr != nil && err == nil {
				err = werr
			}
		}
		return err
	}
	if cfg.seeds < 1 {
		return errors.New("-seeds must be at least 1")
	}
	runs := []run{
		{partition: "iid", compress: "none"},
		{partition: "iid", secure: true, compress: "none"},
		{partition: "iid", secure: true, compress: "int8"},
		{partition: "iid", secure: true, compress: "topk", topk: cfg.topk},
		{partition: "pathological", compress: "none"},
		{partition: "pathological", secure: true, compress: "none"},
	}
	var results []*result
	for _, r := range runs {
		for k := range cfg.seeds {
			r.seed = cfg.seed + uint64(k)
			res, err := simulate(ctx, cfg, e, r, out)
			if res != nil && len(res.lines) > 0 {
				results = append(results, res)
				if werr := writeCSV(filepath.Join(cfg.out, r.file()), res); werr != nil {
					return werr
				}
			}
			if err != nil {
				return err
			}
		}
	}
	return writeOutputs(cfg, results, "table", out)
}
