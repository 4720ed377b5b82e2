package main

import "testing"

func TestModelLinesString(t *testing.T) {
	if got, want := modelLines(map[string]uint64{"logreg": 6, "2nn": 3}), "2nn v3, logreg v6"; got != want {
		t.Fatalf("modelLines = %q, want %q", got, want)
	}
}
