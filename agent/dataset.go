package agent

import (
	"fmt"
	"os"
	"runtime/debug"

	"github.com/fedge/fedge/tensor"
	"github.com/fedge/fedge/tensor/data"
)

// heldOutSalt separates the held-out split's seed from the partition's.
const heldOutSalt = 0x9e3779b97f4a7c15

// localData is the agent's private data, split once at start-up into the
// part it trains on and the part it evaluates candidate models on. It never
// leaves the process.
type localData struct {
	train, heldOut *tensor.Dataset
	// text holds the documents of a text dataset, whose train and heldOut
	// then hold document numbers (see textData); nil for other kinds.
	text *textData
}

// loadData reads the configured dataset, keeps this agent's shard and
// splits off the held-out part. The split depends only on the
// configuration, so it is the same after every restart.
func loadData(cfg *DatasetConfig) (*localData, error) {
	if cfg.Kind == "" { // an external trainer's agent: no data of its own
		return &localData{train: &tensor.Dataset{}, heldOut: &tensor.Dataset{}}, nil
	}
	if cfg.Kind == DatasetText {
		d, err := loadText(cfg)
		if err != nil {
			return nil, fmt.Errorf("agent.loadData: %w", err)
		}
		return d, nil
	}
	ds, err := readDataset(cfg)
	if err != nil {
		return nil, fmt.Errorf("agent.loadData: %w", err)
	}
	ds, err = selectShard(cfg, ds)
	if err != nil {
		return nil, fmt.Errorf("agent.loadData: %w", err)
	}
	train, held := data.HoldOut(ds, cfg.HeldOut, cfg.Seed^heldOutSalt)
	// Reading MNIST decodes both full sets; hand the transient memory back
	// to the OS so an idle agent stays small.
	debug.FreeOSMemory()
	return &localData{train: train, heldOut: held}, nil
}

func readDataset(cfg *DatasetConfig) (*tensor.Dataset, error) {
	switch cfg.Kind {
	case DatasetMNIST:
		train, _, err := data.LoadMNIST(cfg.Path)
		return train, err
	case DatasetIDX:
		fi, err := os.Open(cfg.TrainImages)
		if err != nil {
			return nil, err
		}
		defer fi.Close()
		images, err := data.IDXReader{}.ReadImages(fi)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cfg.TrainImages, err)
		}
		fl, err := os.Open(cfg.TrainLabels)
		if err != nil {
			return nil, err
		}
		defer fl.Close()
		labels, err := data.IDXReader{}.ReadLabels(fl)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cfg.TrainLabels, err)
		}
		classes := 10
		if len(cfg.Classes) > 0 {
			classes = len(cfg.Classes)
		}
		return data.IDXDataset(images, labels, classes)
	case DatasetCSV:
		f, err := os.Open(cfg.Path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		t, err := data.ReadCSV(f, data.CSVOptions{Label: cfg.LabelColumn, Features: cfg.Features, Classes: cfg.Classes})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cfg.Path, err)
		}
		return t.Data, nil
	}
	return nil, fmt.Errorf("%w: dataset kind %q", ErrConfig, cfg.Kind)
}

// selectShard keeps the configured indices or demo shard of ds.
func selectShard(cfg *DatasetConfig, ds *tensor.Dataset) (*tensor.Dataset, error) {
	if len(cfg.Indices) > 0 {
		for _, i := range cfg.Indices {
			if i >= ds.Len() {
				return nil, fmt.Errorf("%w: dataset.indices: %d is past the %d examples", ErrConfig, i, ds.Len())
			}
		}
		return ds.Subset(cfg.Indices), nil
	}
	if cfg.Shards == 0 {
		return ds, nil
	}
	var parts [][]int
	var err error
	switch cfg.Partition {
	case "", PartitionIID:
		if cfg.Shards > ds.Len() {
			return nil, fmt.Errorf("%w: %d shards of %d examples", ErrConfig, cfg.Shards, ds.Len())
		}
		parts = data.PartitionIID(ds.Len(), cfg.Shards, cfg.Seed)
	case PartitionPathological:
		parts, err = data.PartitionPathological(ds.Y, cfg.Shards, 2, cfg.Seed)
	case PartitionDirichlet:
		parts, err = data.PartitionDirichlet(ds.Y, cfg.Shards, cfg.Alpha, cfg.Seed, 10)
	}
	if err != nil {
		return nil, err
	}
	return ds.Subset(parts[cfg.Shard]), nil
}
