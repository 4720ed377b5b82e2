package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestRunVerbs(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		code     int
		contains string
	}{
		{"help", nil, 0, "usage: fedge"},
		{"version", []string{"version"}, 0, "fedge "},
		{"unknown", []string{"frobnicate"}, 2, "unknown command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errw bytes.Buffer
			if code := run(tt.args, &out, &errw); code != tt.code {
				t.Fatalf("exit %d, want %d", code, tt.code)
			}
			if !strings.Contains(out.String()+errw.String(), tt.contains) {
				t.Fatalf("output %q lacks %q", out.String()+errw.String(), tt.contains)
			}
		})
	}
}
