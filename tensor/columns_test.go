package tensor

import (
	"errors"
	"testing"
)

func TestSpecColumns(t *testing.T) {
	lo, hi := float32(0), float32(1)
	cols := []InputColumn{{Name: "age", Missing: ColumnMean, Fill: 3, Lo: &lo, Hi: &hi}, {Name: "color", Missing: ColumnDrop, Categories: []string{"red", "blue"}, Other: true}}
	s := Spec{Input: []int{4}, Layers: []LayerSpec{{Type: LayerDense, Units: 2}}, Columns: cols}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if ColumnsWidth(cols) != 4 || cols[1].Category("blue") != 1 || cols[1].Category("pink") != 2 || cols[0].Clip(5) != 1 {
		t.Fatal("width, category or clip")
	}
	c := s.clone()
	*c.Columns[0].Lo = -1
	c.Columns[1].Categories[0] = "x"
	if *s.Columns[0].Lo != 0 || s.Columns[1].Categories[0] != "red" {
		t.Fatal("clone shares columns")
	}
	bad := []Spec{
		{Input: []int{3}, Layers: s.Layers, Columns: cols},
		{Input: []int{4}, Layers: s.Layers, Columns: []InputColumn{{Name: "a", Missing: "guess"}, {Name: "b", Categories: []string{"x", "y", "z"}}}},
		{Input: []int{2}, Layers: s.Layers, Columns: []InputColumn{{Name: "a"}, {Name: "a"}}},
		{Input: []int{1}, Layers: s.Layers, Columns: []InputColumn{{Name: "a", Lo: &hi, Hi: &lo}}},
	}
	for i, b := range bad {
		if err := b.Validate(); !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("case %d: %v", i, err)
		}
	}
}
