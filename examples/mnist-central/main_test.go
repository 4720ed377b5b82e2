package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/fedge/fedge/internal/testutil"
	"github.com/fedge/fedge/tensor"
)

func TestRunSmall(t *testing.T) {
	testutil.MNISTDir(t)
	save := filepath.Join(t.TempDir(), "m.fedgemdl")
	var out bytes.Buffer
	cfg := config{model: tensor.SpecLogReg, epochs: 2, batch: 20, lr: 0.1, seed: 3, limit: 3000, save: save}
	if err := run(context.Background(), cfg, &out); err != nil {
		t.Fatal(err)
	}
	t.Log(out.String())
	acc := regexp.MustCompile(`epoch (\d)  train loss [0-9.]+  test accuracy ([0-9.]+)`).FindAllStringSubmatch(out.String(), -1)
	if len(acc) != 2 {
		t.Fatalf("want 2 epoch lines, got %q", out.String())
	}
	if a, _ := strconv.ParseFloat(acc[1][2], 64); a < 0.8 {
		t.Errorf("logreg on 3,000 images: test accuracy %v, want >= 0.8", a)
	}
	if !regexp.MustCompile(`seed 3  training time .* wall time `).MatchString(out.String()) {
		t.Errorf("no summary line in %q", out.String())
	}
	if _, err := readModel(save); err != nil {
		t.Errorf("saved model: %v", err)
	}
	if err := run(context.Background(), config{model: "vgg", epochs: 1, batch: 1, lr: 1, limit: 10}, &out); !errors.Is(err, tensor.ErrUnknownSpec) {
		t.Errorf("unknown model: %v", err)
	}
}

func readModel(path string) (*tensor.Model, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return tensor.ReadModel(f, 0)
}
