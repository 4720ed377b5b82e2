package agent

import (
	"errors"
	"testing"
)

func TestLoadDatasetRefusesText(t *testing.T) {
	for _, kind := range []string{"", DatasetText} {
		if _, _, err := LoadDataset(DatasetConfig{Kind: kind, Path: "x"}); !errors.Is(err, ErrNoPool) {
			t.Errorf("kind %q: got %v, want ErrNoPool", kind, err)
		}
	}
}
