package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/fedge/fedge/tensor"
	"github.com/fedge/fedge/tensor/data"
	"github.com/fedge/fedge/tensor/text"
)

// errNotTextModel reports a model without a text section offered to an
// agent whose data is text, or the other way round.
var errNotTextModel = errors.New("model and local data disagree on text")

// textFormat returns the data format and field separator of a text
// dataset: Format, or Path's extension.
func (d *DatasetConfig) textFormat() (string, rune, error) {
	ext := strings.ToLower(filepath.Ext(d.Path))
	switch d.Format {
	case data.TextCSV:
		if ext == ".tsv" {
			return data.TextCSV, '\t', nil
		}
		return data.TextCSV, ',', nil
	case data.TextJSONL:
		return data.TextJSONL, 0, nil
	case "":
		switch ext {
		case ".csv":
			return data.TextCSV, ',', nil
		case ".tsv":
			return data.TextCSV, '\t', nil
		case ".jsonl", ".ndjson":
			return data.TextJSONL, 0, nil
		}
		return "", 0, fmt.Errorf("%s: name the format (csv or jsonl): the extension %q does not say", d.Path, ext)
	}
	return "", 0, fmt.Errorf("%q is not csv or jsonl", d.Format)
}

// textData is a text dataset: the documents, with localData's train and
// held-out splits holding document numbers (one float32 feature each,
// exact below 2^24) in place of features, so that shards and the held-out
// split are drawn as for any dataset. Each model's tokenizer turns them
// into its input (forModel), cached for the last tokenizer used.
type textData struct {
	docs []string

	mu             sync.Mutex
	key            string // the tokenizer the cache is for
	train, heldOut *tensor.Dataset
}

// maxTextDocs bounds a text dataset: its document numbers travel as
// float32, exact up to 2^24.
const maxTextDocs = 1 << 24

// loadText reads a text dataset, keeps this agent's shard and splits off
// the held-out part.
func loadText(cfg *DatasetConfig) (*localData, error) {
	format, comma, err := cfg.textFormat()
	if err != nil {
		return nil, fmt.Errorf("%w: dataset.format: %v", ErrConfig, err)
	}
	f, err := os.Open(cfg.Path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	opts := data.TextOptions{Format: format, Comma: comma, TextColumn: cfg.TextColumn, LabelColumn: cfg.LabelColumn,
		Classes: cfg.Classes, MaxRows: maxTextDocs}
	t, err := data.ReadText(f, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Path, err)
	}
	ds := &tensor.Dataset{X: make([]float32, len(t.Texts)), Y: t.Labels, Shape: []int{1}, Classes: len(t.Classes)}
	for i := range ds.X {
		ds.X[i] = float32(i)
	}
	ds, err = selectShard(cfg, ds)
	if err != nil {
		return nil, err
	}
	train, held := data.HoldOut(ds, cfg.HeldOut, cfg.Seed^heldOutSalt)
	return &localData{train: train, heldOut: held, classes: t.Classes, text: &textData{docs: t.Texts}}, nil
}

// tokenized returns the splits of document numbers idxTrain and idxHeld
// tokenized for spec, from the cache if the last model used the same
// tokenizer.
func (t *textData) tokenized(spec tensor.Spec, idxTrain, idxHeld *tensor.Dataset) (*tensor.Dataset, *tensor.Dataset, error) {
	tok, err := text.New(spec)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: the agent's data is text: %w", errNotTextModel, err)
	}
	key := fmt.Sprintf("%d/%d/%d/%s", tok.Vocab(), tok.MaxTokens(), spec.Text.MaxN(), spec.Text.Hash)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.key == key {
		return t.train, t.heldOut, nil
	}
	enc := func(idx *tensor.Dataset) (*tensor.Dataset, error) {
		docs := make([]string, idx.Len())
		for i := range docs {
			docs[i] = t.docs[int(idx.X[i])]
		}
		ds, _, err := tok.Dataset(docs, idx.Y, idx.Classes)
		return ds, err
	}
	train, err := enc(idxTrain)
	if err != nil {
		return nil, nil, err
	}
	held, err := enc(idxHeld)
	if err != nil {
		return nil, nil, err
	}
	t.key, t.train, t.heldOut = key, train, held
	return train, held, nil
}
