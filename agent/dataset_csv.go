package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/fedge/fedge/tensor"
	"github.com/fedge/fedge/tensor/data"
)

// maxPrepared bounds the cleaned datasets an agent keeps, one per set of
// input columns (in practice one per job).
const maxPrepared = 4

// rawCSV is a CSV dataset kept as read (missing cells and all), with
// this agent's training and held-out rows, so each job's cleaning rules
// can be applied to it when the job's rounds arrive.
type rawCSV struct {
	path            string
	table           *data.RawTable
	trainRows, held []int
	// baseErr is why the table cannot be used without a job's rules
	// (a missing cell, a column that is not numbers).
	baseErr error

	mu       sync.Mutex
	prepared map[string]*preparedData // by the columns' JSON
}

// preparedData is the raw table cleaned by one model's input columns.
type preparedData struct {
	train, heldOut *tensor.Dataset
	report         data.CleanReport // of the training rows
}

// readRawCSV reads the configured CSV file whole (a malformed file is an
// error naming its line and column, and nothing is kept).
func readRawCSV(cfg *DatasetConfig) (*data.RawTable, error) {
	f, err := os.Open(cfg.Path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	t, err := data.ReadRawCSV(f, data.CSVOptions{Label: cfg.LabelColumn, Features: cfg.Features, Classes: cfg.Classes})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Path, err)
	}
	return t, nil
}

// loadCSV reads the CSV dataset, keeps this agent's rows and splits off
// the held-out ones, then builds the data as read (every column a number,
// no missing cell); a table that needs a job's rules loads all the same,
// with empty datasets as read and the reason kept.
func loadCSV(cfg *DatasetConfig) (*localData, error) {
	t, err := readRawCSV(cfg)
	if err != nil {
		return nil, err
	}
	rows, err := selectRows(cfg, t.Rows(), t.Labels)
	if err != nil {
		return nil, err
	}
	train, held := data.HoldOutRows(rows, cfg.HeldOut, cfg.Seed^heldOutSalt)
	r := &rawCSV{path: cfg.Path, table: t, trainRows: train, held: held, prepared: map[string]*preparedData{}}
	cols := make([]tensor.InputColumn, len(t.Columns))
	for j, c := range t.Columns {
		cols[j] = tensor.InputColumn{Name: c.Name}
	}
	d := &localData{raw: r}
	if d.train, _, r.baseErr = data.CleanTable(t, train, cols); r.baseErr == nil {
		d.heldOut, _, r.baseErr = data.CleanTable(t, held, cols)
	}
	if r.baseErr != nil {
		r.baseErr = fmt.Errorf("%s: %w; a job with data.columns must say what to do with it", cfg.Path, r.baseErr)
		empty := func() *tensor.Dataset {
			return &tensor.Dataset{X: []float32{}, Shape: []int{len(t.Columns)}, Classes: len(t.Classes)}
		}
		d.train, d.heldOut = empty(), empty()
	}
	return d, nil
}

// forColumns returns the training and held-out data cleaned by cols,
// cleaning the raw table on first use.
func (r *rawCSV) forColumns(cols []tensor.InputColumn) (*preparedData, error) {
	key, err := json.Marshal(cols)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, ok := r.prepared[string(key)]; ok {
		return p, nil
	}
	p := &preparedData{}
	if p.train, p.report, err = data.CleanTable(r.table, r.trainRows, cols); err == nil {
		p.heldOut, _, err = data.CleanTable(r.table, r.held, cols)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.path, err)
	}
	if len(r.prepared) >= maxPrepared {
		for k := range r.prepared {
			delete(r.prepared, k)
			break
		}
	}
	r.prepared[string(key)] = p
	return p, nil
}

// errNoColumns is why an agent without CSV data cannot serve a model
// that takes named columns.
var errNoColumns = errors.New("the model takes named CSV columns (data.columns) and the local data is not a CSV table")

// forModel returns the training and held-out examples in the input of an
// engine model of spec: for text data the documents tokenized as spec's
// text section says; for a model with input columns the CSV table cleaned
// and encoded by them; else the data as read. Text data needs a text
// model, and a text model text data (errNotTextModel).
func (d *localData) forModel(spec tensor.Spec) (train, heldOut *tensor.Dataset, err error) {
	switch {
	case d.text != nil:
		return d.text.tokenized(spec, d.train, d.heldOut)
	case spec.Text != nil:
		return nil, nil, fmt.Errorf("%w: model %q reads text, the agent's data is not text (dataset.kind %q)", errNotTextModel, spec.Name, DatasetText)
	case len(spec.Columns) > 0:
		if d.raw == nil {
			return nil, nil, errNoColumns
		}
		p, err := d.raw.forColumns(spec.Columns)
		if err != nil {
			return nil, nil, err
		}
		return p.train, p.heldOut, nil
	case d.raw != nil && d.raw.baseErr != nil:
		return nil, nil, d.raw.baseErr
	}
	return d.train, d.heldOut, nil
}

// sizes returns the numbers of training and held-out examples (rows, for
// a CSV table, before any job's cleaning).
func (d *localData) sizes() (train, heldOut int) {
	if d.raw != nil {
		return len(d.raw.trainRows), len(d.raw.held)
	}
	return d.train.Len(), d.heldOut.Len()
}

// schema returns the features and classes the data reports (a CSV
// table's feature columns, before one-hot encoding), zero without data.
func (d *localData) schema() (features, classes int) {
	if d.raw != nil {
		if d.raw.table.Rows() == 0 {
			return 0, 0
		}
		return len(d.raw.table.Columns), len(d.raw.table.Classes)
	}
	if d.train.Len() == 0 {
		return 0, 0
	}
	if d.text != nil {
		return 0, d.train.Classes // documents: the width is each text model's input
	}
	return d.train.Features(), d.train.Classes
}
