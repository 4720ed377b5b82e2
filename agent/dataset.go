package agent

import (
	"fmt"
	"os"
	"runtime/debug"
	"slices"

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
	// classes name the classes when the data does: the configured
	// classes, or an image dataset's folder names.
	classes []string
	// images is set for an image dataset, whose shape a model's input
	// must match exactly (fitsModel).
	images bool
	// raw is a CSV table as read, for jobs whose models take named
	// columns (nil for other kinds); train and heldOut are then the table
	// without cleaning, empty if it needs a job's rules.
	raw *rawCSV
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
	if cfg.Kind == DatasetCSV {
		d, err := loadCSV(cfg)
		if err != nil {
			return nil, fmt.Errorf("agent.loadData: %w", err)
		}
		d.classes = cfg.Classes
		return d, nil
	}
	classes := cfg.Classes
	var ds *tensor.Dataset
	var err error
	if cfg.Kind == DatasetImages {
		ds, classes, err = data.ReadImageFolder(cfg.Path, cfg.imageOptions())
	} else {
		ds, err = readDataset(cfg)
	}
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
	return &localData{train: train, heldOut: held, classes: classes, images: cfg.Kind == DatasetImages}, nil
}

// imageOptions are the preprocessing of an image dataset: the configured
// shape and classes.
func (d *DatasetConfig) imageOptions() data.ImageOptions {
	return data.ImageOptions{Width: d.Image.Width, Height: d.Image.Height, Channels: d.Image.Channels, Classes: d.Classes}
}

// fitsModel reports an image dataset whose shape is not the model's
// image input [C H W], naming both: the images were converted to
// dataset.image when the agent loaded them. A model taking a flat vector,
// and other data, are checked by their feature count alone.
func (d *localData) fitsModel(version uint64, spec tensor.Spec) error {
	if !d.images || len(spec.Input) != 3 || slices.Equal(spec.Input, d.train.Shape) {
		return nil
	}
	return fmt.Errorf("%w: model %d takes input %v, the local images are %v ([channels height width] from dataset.image)",
		tensor.ErrShape, version, spec.Input, d.train.Shape)
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
	}
	return nil, fmt.Errorf("%w: dataset kind %q", ErrConfig, cfg.Kind)
}

// selectShard keeps the configured indices or demo shard of ds.
func selectShard(cfg *DatasetConfig, ds *tensor.Dataset) (*tensor.Dataset, error) {
	rows, err := selectRows(cfg, ds.Len(), ds.Y)
	if err != nil {
		return nil, err
	}
	if len(cfg.Indices) == 0 && cfg.Shards == 0 {
		return ds, nil
	}
	return ds.Subset(rows), nil
}

// selectRows returns the configured indices or demo shard of n examples
// with labels y (a negative label counts as class 0 for the partitions).
func selectRows(cfg *DatasetConfig, n int, y []int32) ([]int, error) {
	if len(cfg.Indices) > 0 {
		for _, i := range cfg.Indices {
			if i >= n {
				return nil, fmt.Errorf("%w: dataset.indices: %d is past the %d examples", ErrConfig, i, n)
			}
		}
		return cfg.Indices, nil
	}
	if cfg.Shards == 0 {
		all := make([]int, n)
		for i := range all {
			all[i] = i
		}
		return all, nil
	}
	labels := y
	if slices.ContainsFunc(y, func(l int32) bool { return l < 0 }) {
		labels = make([]int32, len(y))
		for i, l := range y {
			labels[i] = max(l, 0)
		}
	}
	var parts [][]int
	var err error
	switch cfg.Partition {
	case "", PartitionIID:
		if cfg.Shards > n {
			return nil, fmt.Errorf("%w: %d shards of %d examples", ErrConfig, cfg.Shards, n)
		}
		parts = data.PartitionIID(n, cfg.Shards, cfg.Seed)
	case PartitionPathological:
		parts, err = data.PartitionPathological(labels, cfg.Shards, 2, cfg.Seed)
	case PartitionDirichlet:
		parts, err = data.PartitionDirichlet(labels, cfg.Shards, cfg.Alpha, cfg.Seed, 10)
	}
	if err != nil {
		return nil, err
	}
	return parts[cfg.Shard], nil
}
