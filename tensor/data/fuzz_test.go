package data

import (
	"bytes"
	"errors"
	"math"
	"testing"
)

// sentinel reports whether err wraps one of the errors a decoder may return
// for bad bytes from an in-memory reader.
func sentinel(err error) bool {
	for _, s := range []error{ErrFormat, ErrTruncated, ErrLimit, ErrMissingValue} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

func FuzzReadIDXImages(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		img, err := IDXReader{MaxBytes: 1 << 20}.ReadImages(bytes.NewReader(b))
		if err != nil {
			if !sentinel(err) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		if img.Rows <= 0 || img.Cols <= 0 || len(img.Pixels) != img.Count*img.Rows*img.Cols || len(img.Pixels) > 1<<20 {
			t.Fatalf("%d×%d×%d images with %d pixels", img.Count, img.Rows, img.Cols, len(img.Pixels))
		}
	})
}

func FuzzReadIDXLabels(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		lab, err := IDXReader{MaxBytes: 1 << 20}.ReadLabels(bytes.NewReader(b))
		if err != nil {
			if !sentinel(err) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		if len(lab) > 1<<20 {
			t.Fatalf("%d labels over the limit", len(lab))
		}
	})
}

func FuzzReadCSV(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte, policy uint8) {
		opts := CSVOptions{Label: "y", Missing: MissingPolicy(policy % 5), Fill: 0.5, MaxRows: 1000, MaxColumns: 64, MaxBytes: 1 << 16}
		tab, err := ReadCSV(bytes.NewReader(b), opts)
		if err != nil {
			if !sentinel(err) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		if err := tab.Data.Validate(); err != nil {
			t.Fatal(err)
		}
		if len(tab.Features) != tab.Data.Features() || len(tab.Classes) != tab.Data.Classes {
			t.Fatalf("%d names for %d features, %d for %d classes", len(tab.Features), tab.Data.Features(), len(tab.Classes), tab.Data.Classes)
		}
		for _, v := range tab.Data.X {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatalf("value %v in the dataset", v)
			}
		}
	})
}

func FuzzReadGraph(f *testing.F) {
	f.Fuzz(func(t *testing.T, edges, features, labels []byte) {
		opts := GraphOptions{MaxNodes: 1000, MaxEdges: 10000, MaxFeatures: 64, MaxValues: 1 << 14, MaxLine: 1 << 12}
		gt, err := ReadGraph(bytes.NewReader(edges), bytes.NewReader(features), bytes.NewReader(labels), opts)
		if err != nil {
			if !sentinel(err) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		g := gt.Graph
		n := g.Nodes()
		if n == 0 || len(gt.IDs) != n || len(g.X) != n*g.Features || g.Adj.Rows != n || len(g.Adj.RowPtr) != n+1 ||
			int(g.Adj.RowPtr[n]) != len(g.Adj.ColIdx) || len(gt.Classes) != g.Classes {
			t.Fatalf("inconsistent graph: %d nodes, %d values, %d features", n, len(g.X), g.Features)
		}
		for _, j := range g.Adj.ColIdx {
			if j < 0 || int(j) >= n {
				t.Fatalf("column %d outside %d nodes", j, n)
			}
		}
		for _, y := range g.Y {
			if y < 0 || int(y) >= g.Classes {
				t.Fatalf("label %d outside %d classes", y, g.Classes)
			}
		}
	})
}
