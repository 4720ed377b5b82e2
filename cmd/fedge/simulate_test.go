package main

import (
	"encoding/csv"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fedge/fedge/internal/testutil"
)

func TestSimulateBadInput(t *testing.T) {
	dir := t.TempDir()
	job := filepath.Join(dir, "job.json")
	if err := os.WriteFile(job, []byte(`{"name": "s", "model": "logreg", "rounds": 1}`), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"model": "logreg", "roundz": 1}`), 0o600); err != nil {
		t.Fatal(err)
	}
	ds := filepath.Join(dir, "ds.json")
	if err := os.WriteFile(ds, []byte(`{"kind": "csv", "pathz": "x.csv"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		args     []string
		contains string
	}{
		{"no job", []string{"-local"}, "-f job.json is required"},
		{"job and connect-only", []string{"-local", "-connect-only", "-f", job}, "drop -f"},
		{"zero agents", []string{"-local", "-agents", "0", "-f", job}, "-agents 0"},
		{"partition", []string{"-local", "-partition", "zipf", "-f", job}, `-partition "zipf"`},
		{"test fraction", []string{"-local", "-test-fraction", "1", "-f", job}, "-test-fraction 1"},
		{"data kind", []string{"-local", "-data", "text", "-f", job}, `-data "text"`},
		{"unknown job field", []string{"-local", "-f", bad}, "roundz"},
		{"unknown dataset field", []string{"-local", "-dataset", ds, "-f", job}, "pathz"},
		{"local and coordinators", []string{"-local", "-coordinators", "127.0.0.1:9", "-f", job}, "drop -coordinators"},
		{"no cluster", []string{"-coordinators", "", "-f", job, "-data-path", dir}, "no coordinators"},
		{"replot a job file", []string{"-replot", job}, "not a rounds.csv"},
		{"replot nothing", []string{"-replot", ","}, "names no file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := runCLI(t, append([]string{"simulate"}, tt.args...)...)
			if code != exitUsage {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, exitUsage, out, errs)
			}
			if !strings.Contains(errs, tt.contains) {
				t.Fatalf("stderr lacks %q:\n%s", tt.contains, errs)
			}
		})
	}
}

// fedge simulate -local runs a job of virtual agents against an
// in-process cluster over QUIC and writes its rounds.
func TestSimulateLocal(t *testing.T) {
	dir := t.TempDir()
	job := filepath.Join(dir, "job.json")
	if err := os.WriteFile(job, []byte(`{"name": "s", "model": "logreg", "rounds": 2, "fraction": 1, "min_clients": 4,
		"plan": {"epochs": 1, "batch_size": 50, "lr": 0.1}, "secagg": {"enabled": true}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	code, stdout, errs := runCLI(t, "simulate", "-local", "-agents", "4", "-per-socket", "2", "-f", job, "-out", out,
		"-data-path", testutil.MNISTDir(t))
	if code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout, errs)
	}
	if !strings.Contains(stdout, "connected 4 virtual agents over QUIC from 2 UDP sockets") {
		t.Errorf("stdout lacks the connection line:\n%s", stdout)
	}
	f, err := os.Open(filepath.Join(out, "rounds.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 || rows[0][4] != "test_accuracy" || rows[2][3] != "4" {
		t.Errorf("rounds.csv: %q", rows)
	}
	if fi, err := os.Stat(filepath.Join(out, "rounds.png")); err != nil || fi.Size() == 0 {
		t.Errorf("rounds.png: %v", err)
	}
	// The run's rounds.csv replots (no job here used DP: an empty plot).
	if code, stdout, errs := runCLI(t, "simulate", "-replot", filepath.Join(out, "rounds.csv"), "-out", out); code != 0 || !strings.Contains(stdout, "accuracy-epsilon.png") {
		t.Errorf("replot: exit %d\nstdout: %s\nstderr: %s", code, stdout, errs)
	}
}
