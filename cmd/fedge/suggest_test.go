package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestClosest(t *testing.T) {
	tests := []struct{ in, want string }{
		{"roundz", "rounds"},
		{"min_client", "min_clients"},
		{"batchsize", "batch_size"},
		{"xyz", ""},
		{"jobz", "jobs"},
	}
	names := append(jsonFields(reflectJobSpec()), "jobs", "models")
	for _, tt := range tests {
		if got := closest(tt.in, names); got != tt.want {
			t.Errorf("closest(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestMessages: a misspelt command or job-file field gets a suggestion, and
// a runtime or input error is a line or two, not the whole usage.
func TestMessages(t *testing.T) {
	dir := t.TempDir()
	job := filepath.Join(dir, "job.json")
	if err := os.WriteFile(job, []byte(`{"model": "2nn", "plan": {"batchsize": 10}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"command", []string{"jbos"}, `unknown command "jbos" (did you mean jobs?)`},
		{"verb", []string{"jobs", "strat"}, `unknown verb "strat" (did you mean start?)`},
		{"job field", []string{"jobs", "start", "-f", job}, `unknown field "batchsize" (did you mean "batch_size"?)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(tt.args, &out, &errb); code != exitUsage {
				t.Fatalf("exit %d, want %d", code, exitUsage)
			}
			if !strings.Contains(errb.String(), tt.want) {
				t.Fatalf("stderr lacks %q:\n%s", tt.want, errb.String())
			}
			if tt.name != "verb" && strings.Count(errb.String(), "\n") > 3 {
				t.Fatalf("%d lines of stderr for one error:\n%s", strings.Count(errb.String(), "\n"), errb.String())
			}
		})
	}
}

func TestBuildVersion(t *testing.T) {
	if v := buildVersion(); !strings.Contains(v, "go1.") || v == "(devel)" {
		t.Fatalf("buildVersion() = %q", v)
	}
}
