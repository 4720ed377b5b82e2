package main

import (
	"bytes"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedge/fedge/coordinator/api"
)

// TestPrintExplanation: the table ranks features by importance and names
// image pixels by row and column; -png writes a heat map for an image
// model and a bar chart for a tabular one.
func TestPrintExplanation(t *testing.T) {
	img := api.ModelExplanation{Version: 7, Shape: []int{1, 2, 3}, Importance: []float64{0.1, 0.5, 0, 0.9, 0.2, 0.3},
		Examples: 480, Agents: 4, Steps: 32, MaxExamples: 120, Round: 12, At: time.Date(2026, 12, 6, 4, 0, 0, 0, time.UTC)}
	var buf bytes.Buffer
	if err := printExplanation(&buf, img, 3); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	contains(t, "explanation table", out, "Model v7", "480 held-out examples of 4 agents", "32 steps", "round 12")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3+1+3 || !strings.Contains(lines[4], "(1, 0)") || !strings.Contains(lines[5], "(0, 1)") || !strings.Contains(lines[6], "(1, 2)") {
		t.Fatalf("top 3 rows are not the 3 most important pixels in order:\n%s", out)
	}
	if !strings.Contains(lines[4], strings.Repeat("#", 30)) {
		t.Errorf("the most important feature has no full bar:\n%s", out)
	}
	dir := t.TempDir()
	heat := filepath.Join(dir, "heat.png")
	if err := writeExplanationPNG(heat, img); err != nil {
		t.Fatal(err)
	}
	pic := decodePNG(t, heat)
	if b := pic.Bounds(); b.Dx() != 3*8 || b.Dy() != 2*8 {
		t.Errorf("heat map %v, want 24×16", b)
	}
	tab := img
	tab.Shape, tab.Importance = []int{4}, []float64{1, 2, 3, 4}
	bars := filepath.Join(dir, "bars.png")
	if err := writeExplanationPNG(bars, tab); err != nil {
		t.Fatal(err)
	}
	if b := decodePNG(t, bars).Bounds(); b.Dx() < 100 || b.Dy() < 100 {
		t.Errorf("bar chart %v", b)
	}
}

func decodePNG(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pic, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return pic
}
