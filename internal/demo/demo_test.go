package demo

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestWritePlot(t *testing.T) {
	path := filepath.Join(t.TempDir(), "acc.png")
	rounds := []RoundLine{{Round: 1, Accuracy: 0.5}, {Round: 2, Accuracy: 0.8}, {Round: 3, Accuracy: 0.96}}
	if err := writePlot(path, rounds, nil, 0.95); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) || len(b) < 2000 {
		t.Fatalf("not a plausible PNG: %d bytes", len(b))
	}
	// With federated evaluations the plot draws a second series.
	withEval := filepath.Join(t.TempDir(), "eval.png")
	if err := writePlot(withEval, rounds, []EvalLine{{AfterRound: 2, Accuracy: 0.7}, {AfterRound: 3, Accuracy: 0.9}}, 0.95); err != nil {
		t.Fatal(err)
	}
	b2, err := os.ReadFile(withEval)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b2, []byte("\x89PNG\r\n\x1a\n")) || bytes.Equal(b, b2) {
		t.Fatalf("the plot with held-out accuracy is not a PNG or draws nothing more (%d vs %d bytes)", len(b2), len(b))
	}
}

func TestOptionsNeedMNIST(t *testing.T) {
	if _, err := Run(context.Background(), Options{Binary: "/bin/true"}, &bytes.Buffer{}); err == nil {
		t.Fatal("a demo without MNIST data started")
	}
}

func TestMNISTFolderCheckedFirst(t *testing.T) {
	dir := t.TempDir()
	_, err := Run(context.Background(), Options{Binary: "/bin/true", MNIST: dir, Dir: filepath.Join(dir, "cluster")}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "train-images-idx3-ubyte.gz") {
		t.Fatalf("err = %v, want the missing MNIST file named", err)
	}
	if _, statErr := os.Stat(filepath.Join(dir, "cluster")); !os.IsNotExist(statErr) {
		t.Fatalf("the demo made its cluster folder before checking -mnist (%v)", statErr)
	}
}

// TestDeadProcessFailsFast: a coordinator process that exits ends the demo
// within seconds, with the end of its log in the error, and the cluster's
// folder is kept.
func TestDeadProcessFailsFast(t *testing.T) {
	mnistDir := t.TempDir()
	for _, f := range []string{"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"} {
		if err := os.WriteFile(filepath.Join(mnistDir, f), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(t.TempDir(), "fake-fedge")
	script := "#!/bin/sh\necho starting $1\necho 'fatal: config is broken' >&2\nexit 3\n"
	if err := os.WriteFile(bin, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	start := time.Now()
	_, err := Run(context.Background(), Options{Binary: bin, MNIST: mnistDir, Out: t.TempDir()}, &out)
	took := time.Since(start)
	if err == nil {
		t.Fatal("the demo went on with dead coordinators")
	}
	if !strings.Contains(err.Error(), "fatal: config is broken") || !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("error does not quote the dead process's log: %v", err)
	}
	if took > 15*time.Second {
		t.Fatalf("the demo took %v to notice", took)
	}
	var kept string
	for _, line := range strings.Split(out.String(), "\n") {
		if rest, ok := strings.CutPrefix(line, "kept the cluster's folder "); ok {
			kept = strings.Fields(rest)[0]
		}
	}
	if kept == "" {
		t.Fatalf("the demo did not say where its folder is:\n%s", out.String())
	}
	if _, err := os.Stat(filepath.Join(kept, "c1", "log")); err != nil {
		t.Fatalf("kept folder has no logs: %v", err)
	}
	os.RemoveAll(kept)
}
