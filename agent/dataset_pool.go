package agent

import (
	"errors"
	"fmt"

	"github.com/fedge/fedge/tensor"
)

// ErrNoPool is returned by LoadDataset for data it cannot hand over as one
// table of numbers: text, or a CSV table that needs a job's data.columns
// rules before it has any.
var ErrNoPool = errors.New("agent: the dataset is not a plain numeric table")

// LoadDataset reads the whole dataset cfg names with the agent's own
// readers (mnist, idx, csv, images), ignoring the shard, indices and
// held-out settings: every example, once. It is for programs that cut one
// dataset among many agents in a process (`fedge simulate`), so the agents
// share the examples and hold only indices. It also returns the class
// names, when the data names them.
func LoadDataset(cfg DatasetConfig) (*tensor.Dataset, []string, error) {
	if cfg.Kind == "" || cfg.Kind == DatasetText {
		return nil, nil, fmt.Errorf("agent.LoadDataset: %w: kind %q", ErrNoPool, cfg.Kind)
	}
	cfg.Partition, cfg.Shard, cfg.Shards, cfg.Indices, cfg.HeldOut = "", 0, 0, nil, 0
	d, err := loadData(&cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("agent.LoadDataset: %w", err)
	}
	if d.train.Len() == 0 {
		why := "no examples"
		if d.raw != nil && d.raw.baseErr != nil {
			why = d.raw.baseErr.Error()
		}
		return nil, nil, fmt.Errorf("agent.LoadDataset: %w: %s", ErrNoPool, why)
	}
	return d.train, d.classes, nil
}
