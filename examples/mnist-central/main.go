package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"github.com/fedge/fedge/internal/mnist"
	"github.com/fedge/fedge/tensor"
	"github.com/fedge/fedge/tensor/data"
)

// config is what the flags set.
type config struct {
	model    string
	epochs   int
	batch    int
	lr       float64
	momentum float64
	seed     uint64
	dataDir  string
	limit    int // use only the first limit training images (0: all)
	save     string
}

func main() {
	var cfg config
	flag.StringVar(&cfg.model, "model", tensor.Spec2NN, "model: logreg, 2nn or cnn")
	flag.IntVar(&cfg.epochs, "epochs", 5, "passes over the training set")
	flag.IntVar(&cfg.batch, "batch", 10, "minibatch size")
	flag.Float64Var(&cfg.lr, "lr", 0.05, "SGD learning rate")
	flag.Float64Var(&cfg.momentum, "momentum", 0, "SGD momentum (0: plain SGD, as in the FedAvg paper)")
	flag.Uint64Var(&cfg.seed, "seed", 1, "seed of the initial weights and the shuffling")
	flag.StringVar(&cfg.dataDir, "data", "", "folder of the MNIST IDX files (default: the GoMNIST module's)")
	flag.IntVar(&cfg.limit, "limit", 0, "train on the first N images only (0: all 60,000)")
	flag.StringVar(&cfg.save, "save", "", "write the trained model to this file")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "mnist-central:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg config, out io.Writer) error {
	start := time.Now()
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
	if cfg.limit > 0 && cfg.limit < train.Len() {
		idx := make([]int, cfg.limit)
		for i := range idx {
			idx[i] = i
		}
		train = train.Subset(idx)
	}
	spec, err := tensor.NamedSpec(cfg.model)
	if err != nil {
		return err
	}
	m, err := tensor.NewModel(spec, cfg.seed)
	if err != nil {
		return err
	}
	if cfg.epochs <= 0 || cfg.batch <= 0 || cfg.lr <= 0 {
		return errors.New("-epochs, -batch and -lr must be positive")
	}
	fmt.Fprintf(out, "model %s (%d parameters), %d training / %d test images, batch %d, lr %g, momentum %g, seed %d\n",
		cfg.model, m.NumParams(), train.Len(), test.Len(), cfg.batch, cfg.lr, cfg.momentum, cfg.seed)
	opt := tensor.NewSGD(tensor.SGDConfig{LR: float32(cfg.lr), Momentum: float32(cfg.momentum)})
	var trained time.Duration
	for epoch := 1; epoch <= cfg.epochs; epoch++ {
		// One Train call per epoch, with its own seed, so each epoch has a
		// fresh shuffle and the test accuracy is measured in between.
		st, err := tensor.Train(ctx, m, train, tensor.TrainConfig{
			Epochs: 1, BatchSize: cfg.batch, Seed: cfg.seed + uint64(epoch), Optimizer: opt,
		})
		if err != nil {
			return err
		}
		trained += st.Duration
		met, err := tensor.Evaluate(m, test)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "epoch %d  train loss %.4f  test accuracy %.4f  test loss %.4f  elapsed %v  (%.0f samples/s)\n",
			epoch, st.Loss, met.Accuracy(), met.Loss(), time.Since(start).Round(time.Millisecond),
			float64(st.Examples)/st.Duration.Seconds())
	}
	if cfg.save != "" {
		f, err := os.Create(cfg.save)
		if err != nil {
			return err
		}
		if _, err := m.WriteTo(f); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "seed %d  training time %v  wall time %v  model hash %x\n",
		cfg.seed, trained.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), m.Hash())
	return nil
}
