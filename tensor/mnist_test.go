package tensor_test

import (
	"context"
	"testing"
	"time"

	"github.com/fedge/fedge/internal/testutil"
	"github.com/fedge/fedge/tensor"
	"github.com/fedge/fedge/tensor/data"
)

// loadMNIST reads the real MNIST files (testutil.MNISTDir: fetched if
// needed; missing fails under CI).
func loadMNIST(t *testing.T) (train, test *tensor.Dataset) {
	t.Helper()
	var err error
	train, test, err = data.LoadMNIST(testutil.MNISTDir(t))
	if err != nil {
		t.Fatal(err)
	}
	return train, test
}

// TestMNIST2NNOneEpoch is the quick version of the accuracy bar: the 2nn
// trained for one epoch on the first 20,000 training images (batch 10,
// SGD lr 0.05) must reach 92% on the full 10,000-image test set.
func TestMNIST2NNOneEpoch(t *testing.T) {
	train, test := loadMNIST(t)
	spec, err := tensor.NamedSpec(tensor.Spec2NN)
	if err != nil {
		t.Fatal(err)
	}
	m, err := tensor.NewModel(spec, 1)
	if err != nil {
		t.Fatal(err)
	}
	idx := make([]int, 20000)
	for i := range idx {
		idx[i] = i
	}
	start := time.Now()
	st, err := tensor.Train(context.Background(), m, train.Subset(idx), tensor.TrainConfig{
		Epochs: 1, BatchSize: 10, LR: 0.05, Seed: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	met, err := tensor.Evaluate(m, test)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("2nn, 1 epoch on 20k: train loss %.4f, test accuracy %.4f (%d/%d), %v",
		st.Loss, met.Accuracy(), met.Correct, met.Total, time.Since(start).Round(time.Millisecond))
	if met.Total != 10000 || met.Accuracy() < 0.92 {
		t.Errorf("test accuracy %.4f, want >= 0.92", met.Accuracy())
	}
}
