package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/internal/testutil"
	"github.com/fedge/fedge/tensor"
)

func defaults() config {
	return config{textColumn: "text", labelColumn: "label", vocab: 1 << 14, dim: 16, tokens: 256, ngrams: 1, epochs: 15, batch: 16, lr: 2, seed: 1, test: 0.2, show: 3}
}

// lastAccuracy returns the test accuracy of the summary line.
func lastAccuracy(t *testing.T, out string) float64 {
	t.Helper()
	m := regexp.MustCompile(`test accuracy ([0-9.]+) after \d+ epochs`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no summary line in %q", out)
	}
	a, _ := strconv.ParseFloat(m[1], 64)
	return a
}

// TestFortunes trains the default model on the fortune cookies: the
// accuracy the README states, the model file and a job file that starts
// the same model federatedly.
func TestFortunes(t *testing.T) {
	testutil.FortunesDir(t)
	dir := t.TempDir()
	cfg := defaults()
	cfg.save, cfg.job = filepath.Join(dir, "m.fedgemdl"), filepath.Join(dir, "job.json")
	var out bytes.Buffer
	if err := run(context.Background(), cfg, &out); err != nil {
		t.Fatal(err)
	}
	t.Log(out.String())
	if a := lastAccuracy(t, out.String()); a < 0.62 {
		t.Errorf("test accuracy %.4f on the fortune topics, want >= 0.62", a)
	}
	f, err := os.Open(cfg.save)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := tensor.ReadModel(f, 0)
	if err != nil || m.Spec.Text == nil {
		t.Fatalf("saved model: %v", err)
	}
	b, err := os.ReadFile(cfg.job)
	if err != nil {
		t.Fatal(err)
	}
	var job api.JobSpec
	if err := json.Unmarshal(b, &job); err != nil {
		t.Fatal(err)
	}
	var spec tensor.Spec
	if err := json.Unmarshal(job.Spec, &spec); err != nil || spec.Validate() != nil || spec.String() != m.Spec.String() || !job.SecAgg.Enabled {
		t.Fatalf("job spec %s (%v), model spec %s", job.Spec, err, m.Spec)
	}
}

// TestOwnData trains on a CSV of the user's, with its own column names.
func TestOwnData(t *testing.T) {
	var b strings.Builder
	b.WriteString("ticket,queue\n")
	for i := range 300 {
		if i%2 == 0 {
			fmt.Fprintf(&b, "\"Invoice %d is overdue, please pay the balance\",billing\n", i)
		} else {
			fmt.Fprintf(&b, "\"Server %d is down, disk full again\",ops\n", i)
		}
	}
	p := filepath.Join(t.TempDir(), "tickets.csv")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := defaults()
	cfg.data, cfg.textColumn, cfg.labelColumn, cfg.epochs, cfg.ngrams = p, "ticket", "queue", 2, 2
	var out bytes.Buffer
	if err := run(context.Background(), cfg, &out); err != nil {
		t.Fatal(err)
	}
	if a := lastAccuracy(t, out.String()); a != 1 || !strings.Contains(out.String(), `2 classes ["billing" "ops"]`) {
		t.Errorf("accuracy %v on two trivially separable queues:\n%s", a, out.String())
	}
	cfg.labelColumn = "label"
	if err := run(context.Background(), cfg, &out); err == nil || !strings.Contains(err.Error(), `label column "label"`) {
		t.Errorf("missing label column: %v", err)
	}
}
