package agent

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fedge/fedge/tensor"
	"github.com/fedge/fedge/tensor/data"
)

func writeTable(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "d.csv")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCSVWithMissingCellsLoads: an agent keeps a CSV with empty cells and
// text columns (it used to refuse it at start-up); a model without input
// columns cannot use it, with the file, line and column; a model with
// them gets the table cleaned by its rules.
func TestCSVWithMissingCellsLoads(t *testing.T) {
	p := writeTable(t, "age,color,label\n31,red,a\n,blue,b\n40,red,a\n25,green,b\n")
	d, err := loadData(&DatasetConfig{Kind: DatasetCSV, Path: p, LabelColumn: "label", Classes: []string{"a", "b"}})
	if err != nil {
		t.Fatal(err)
	}
	if tr, held := d.sizes(); tr != 4 || held != 0 {
		t.Fatalf("sizes %d, %d", tr, held)
	}
	if f, c := d.schema(); f != 2 || c != 2 {
		t.Fatalf("schema %d features, %d classes", f, c)
	}
	_, _, err = d.forModel(tensor.Spec{})
	var le *data.LineError
	if !errors.As(err, &le) || !strings.Contains(err.Error(), p) || le.Line != 2 || le.Column != "color" {
		t.Fatalf("model without columns: %v", err)
	}
	cols := []tensor.InputColumn{{Name: "age", Missing: tensor.ColumnConstant, Fill: 30}, {Name: "color", Categories: []string{"red", "blue"}}}
	ds, _, err := d.forModel(tensor.Spec{Columns: cols})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ds.X, []float32{31, 1, 0, 30, 0, 1, 40, 1, 0, 25, 0, 0}) {
		t.Fatalf("cleaned %v", ds.X)
	}
	if again, _, _ := d.forModel(tensor.Spec{Columns: cols}); again != ds {
		t.Fatal("cleaned data not kept for the job")
	}
	_, _, err = d.forModel(tensor.Spec{Columns: []tensor.InputColumn{{Name: "height"}}})
	if !errors.Is(err, data.ErrMismatch) || !strings.Contains(err.Error(), `"height"`) {
		t.Fatalf("missing column: %v", err)
	}
}

// TestCSVBadInputNeverHalfLoads: a malformed file fails the agent's start
// with the file and line.
func TestCSVBadInputNeverHalfLoads(t *testing.T) {
	p := writeTable(t, "age,label\n31,a\n32,b,extra\n")
	_, err := loadData(&DatasetConfig{Kind: DatasetCSV, Path: p, LabelColumn: "label"})
	var le *data.LineError
	if !errors.As(err, &le) || le.Line != 3 || !strings.Contains(err.Error(), p) {
		t.Fatalf("err %v", err)
	}
}

func TestDecodeRows(t *testing.T) {
	lo, hi := float32(0), float32(100)
	spec := tensor.Spec{Input: []int{4}, Layers: []tensor.LayerSpec{{Type: tensor.LayerDense, Units: 2}}, Columns: []tensor.InputColumn{
		{Name: "age", Missing: tensor.ColumnMean, Fill: 37, Lo: &lo, Hi: &hi},
		{Name: "color", Missing: tensor.ColumnDrop, Categories: []string{"red", "blue"}, Other: true},
	}}
	x, n, _, err := decodeInputs(nil, []byte(`{"rows":[{"age": 31, "color": "red"}, {"color": "pink"}, {"age": 250, "color": "blue"}]}`), spec)
	if err != nil || n != 3 || !slices.Equal(x, []float32{31, 1, 0, 0, 37, 0, 0, 1, 100, 0, 1, 0}) {
		t.Fatalf("%v %d %v", err, n, x)
	}
	// Encoded inputs still work.
	if x, n, _, err = decodeInputs(nil, []byte(`{"inputs":[[1,0,1,0]]}`), spec); err != nil || n != 1 || x[2] != 1 {
		t.Fatalf("inputs: %v", err)
	}
	for _, body := range []string{
		`{"rows":[{"age": 31}]}`,                  // color missing, policy drop
		`{"rows":[{"age": "x", "color": "red"}]}`, // not a number
		`{"rows":[{"size": 1, "color": "red"}]}`,  // no such column
		`{"rows":[{"age": 1, "color": "red"}], "inputs": []}`,
	} {
		var re *rowsError
		if _, _, _, err := decodeInputs(nil, []byte(body), spec); !errors.As(err, &re) {
			t.Errorf("%s: %v", body, err)
		}
	}
}
