package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/internal/fortunes"
	"github.com/fedge/fedge/tensor"
	"github.com/fedge/fedge/tensor/data"
	"github.com/fedge/fedge/tensor/text"
)

// config is what the flags set.
type config struct {
	data        string // CSV or JSON Lines; "" for the fortune cookies
	textColumn  string
	labelColumn string
	vocab       int
	dim         int
	tokens      int
	ngrams      int
	epochs      int
	batch       int
	lr          float64
	seed        uint64
	test        float64 // share of the documents held out for testing
	save        string
	job         string
	show        int // test documents whose predictions are printed
}

func main() {
	var cfg config
	flag.StringVar(&cfg.data, "data", "", "labelled documents, .csv or .jsonl (default: Debian's fortune cookies of four topics)")
	flag.StringVar(&cfg.textColumn, "text-column", "text", "column (or JSON key) of the documents")
	flag.StringVar(&cfg.labelColumn, "label-column", "label", "column (or JSON key) of the classes")
	flag.IntVar(&cfg.vocab, "vocab", 1<<14, "hashed vocabulary size (rows of the embedding table)")
	flag.IntVar(&cfg.dim, "dim", 16, "embedding dimension")
	flag.IntVar(&cfg.tokens, "tokens", 256, "token places of the model's input (longer documents are cut)")
	flag.IntVar(&cfg.ngrams, "ngrams", 1, "longest word n-gram hashed (1: words only, 2: also pairs of words)")
	flag.IntVar(&cfg.epochs, "epochs", 15, "passes over the training documents")
	flag.IntVar(&cfg.batch, "batch", 16, "minibatch size")
	flag.Float64Var(&cfg.lr, "lr", 2, "SGD learning rate")
	flag.Uint64Var(&cfg.seed, "seed", 1, "seed of the split, the initial weights and the shuffling")
	flag.Float64Var(&cfg.test, "test", 0.2, "share of the documents held out for testing")
	flag.StringVar(&cfg.save, "save", "", "write the trained model to this file")
	flag.StringVar(&cfg.job, "job", "", "write a job file (fedge jobs start -f) that trains the same model federatedly")
	flag.IntVar(&cfg.show, "show", 5, "test documents whose predictions are printed")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "text-classifier:", err)
		os.Exit(1)
	}
}

// load returns the labelled documents and the class names.
func load(cfg config) ([]fortunes.Doc, []string, error) {
	if cfg.data == "" {
		dir, err := fortunes.Dir()
		if err != nil {
			return nil, nil, err
		}
		docs, err := fortunes.Read(dir, fortunes.Topics)
		return docs, fortunes.Topics, err
	}
	format := data.TextCSV
	comma := ','
	switch strings.ToLower(filepath.Ext(cfg.data)) {
	case ".jsonl", ".ndjson":
		format = data.TextJSONL
	case ".tsv":
		comma = '\t'
	}
	f, err := os.Open(cfg.data)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	t, err := data.ReadText(f, data.TextOptions{Format: format, Comma: comma, TextColumn: cfg.textColumn, LabelColumn: cfg.labelColumn})
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", cfg.data, err)
	}
	docs := make([]fortunes.Doc, len(t.Texts))
	for i := range docs {
		docs[i] = fortunes.Doc{Text: t.Texts[i], Label: t.Classes[t.Labels[i]]}
	}
	return docs, t.Classes, nil
}

func run(ctx context.Context, cfg config, out io.Writer) error {
	start := time.Now()
	if cfg.epochs <= 0 || cfg.batch <= 0 || cfg.lr <= 0 || !(cfg.test > 0 && cfg.test < 1) {
		return errors.New("-epochs, -batch and -lr must be positive, -test in (0, 1)")
	}
	docs, classes, err := load(cfg)
	if err != nil {
		return err
	}
	spec := tensor.TextClassifierSpec(cfg.vocab, cfg.dim, cfg.tokens, cfg.ngrams, len(classes))
	tok, err := text.New(spec)
	if err != nil {
		return err
	}
	trainDocs, testDocs := fortunes.Split(docs, cfg.test, cfg.seed)
	encode := func(ds []fortunes.Doc) (*tensor.Dataset, int, error) {
		texts := make([]string, len(ds))
		y := make([]int32, len(ds))
		for i, d := range ds {
			texts[i] = d.Text
			for c, name := range classes {
				if name == d.Label {
					y[i] = int32(c)
				}
			}
		}
		return tok.Dataset(texts, y, len(classes))
	}
	tokStart := time.Now()
	train, cut, err := encode(trainDocs)
	if err != nil {
		return err
	}
	test, _, err := encode(testDocs)
	if err != nil {
		return err
	}
	tokTime := time.Since(tokStart)
	m, err := tensor.NewModel(spec, cfg.seed)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%d classes %q; %d training / %d test documents (%d cut to %d tokens), tokenized in %v\n",
		len(classes), classes, train.Len(), test.Len(), cut, cfg.tokens, tokTime.Round(time.Millisecond))
	fmt.Fprintf(out, "model: embedding bag %d×%d (%d-grams), dense %d; %d parameters; batch %d, lr %g, seed %d\n",
		cfg.vocab, cfg.dim, max(cfg.ngrams, 1), len(classes), m.NumParams(), cfg.batch, cfg.lr, cfg.seed)
	opt := tensor.NewSGD(tensor.SGDConfig{LR: float32(cfg.lr)})
	var met tensor.Metrics
	for epoch := 1; epoch <= cfg.epochs; epoch++ {
		st, err := tensor.Train(ctx, m, train, tensor.TrainConfig{Epochs: 1, BatchSize: cfg.batch, Seed: cfg.seed + uint64(epoch), Optimizer: opt})
		if err != nil {
			return err
		}
		if met, err = tensor.Evaluate(m, test); err != nil {
			return err
		}
		fmt.Fprintf(out, "epoch %d  train loss %.4f  test accuracy %.4f  test loss %.4f  elapsed %v\n",
			epoch, st.Loss, met.Accuracy(), met.Loss(), time.Since(start).Round(time.Millisecond))
	}
	probs, err := m.Predict(test.X[:min(cfg.show, test.Len())*test.Features()], min(cfg.show, test.Len()))
	if err != nil {
		return err
	}
	c := len(classes)
	for i := range min(cfg.show, test.Len()) {
		p := probs[i*c : (i+1)*c]
		best := 0
		for k := range p {
			if p[k] > p[best] {
				best = k
			}
		}
		fmt.Fprintf(out, "  %-12s (%.2f) for %q, labelled %s\n", classes[best], p[best], clip(testDocs[i].Text), testDocs[i].Label)
	}
	if cfg.save != "" {
		if err := save(cfg.save, m); err != nil {
			return err
		}
	}
	if cfg.job != "" {
		if err := writeJob(cfg.job, spec, classes); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "test accuracy %.4f after %d epochs  wall time %v  model hash %x\n",
		met.Accuracy(), cfg.epochs, time.Since(start).Round(time.Millisecond), m.Hash())
	return nil
}

// clip shortens a document to one line of at most 60 bytes.
func clip(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return s
}

func save(path string, m *tensor.Model) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := m.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// writeJob writes a federated job of the same model: the settings the
// text cluster test (internal/testcluster) runs with.
func writeJob(path string, spec tensor.Spec, classes []string) error {
	raw, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	job := api.JobSpec{
		Name: "text-classifier", Spec: raw, Rounds: 10, Fraction: 1, MinClients: 3, Seed: 1, EvalEvery: 10,
		Data:   api.DataSchema{Kind: "text", Classes: len(classes)},
		Plan:   api.LocalPlan{Epochs: 2, BatchSize: 16, LR: 2},
		SecAgg: api.SecAggSpec{Enabled: true, Clip: 4},
	}
	b, err := json.MarshalIndent(job, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
