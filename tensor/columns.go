package tensor

import (
	"fmt"
	"math"
)

// Missing-value handling an InputColumn records (InputColumn.Missing).
const (
	// ColumnReject: a missing value is an error (the default).
	ColumnReject = "reject"
	// ColumnDrop: an example with a missing value is left out of training
	// and evaluation; a prediction for it is refused.
	ColumnDrop = "drop"
	// ColumnMean, ColumnMedian and ColumnConstant: a missing value becomes
	// InputColumn.Fill, which holds the federation's mean or median, or
	// the job's constant.
	ColumnMean     = "mean"
	ColumnMedian   = "median"
	ColumnConstant = "constant"
)

// MaxCategories bounds the categories of one InputColumn.
const MaxCategories = 4096

// InputColumn describes one raw column of a tabular model's input and how
// it becomes input values: a numeric column gives one value (a missing one
// filled, then clipped to [Lo, Hi]); a categorical column (Categories set)
// gives a one-hot block of len(Categories) values, plus one for Other. A
// Spec's Columns, in order, produce its whole input vector, so serving can
// take raw rows ({"age": 31, "color": "red"}) and data cleaning decided by
// a federation travels inside the model like a standardize layer does.
type InputColumn struct {
	Name string `json:"name"`
	// Missing is what a missing value does: ColumnReject (also ""),
	// ColumnDrop, or one of the fills (ColumnMean, ColumnMedian,
	// ColumnConstant), which put Fill in its place.
	Missing string  `json:"missing,omitempty"`
	Fill    float32 `json:"fill,omitempty"`
	// Lo and Hi, if set, clip the column's values (after filling).
	Lo *float32 `json:"lo,omitempty"`
	Hi *float32 `json:"hi,omitempty"`
	// Categories makes the column categorical: value Categories[i] sets
	// one-hot slot i. A value in none of them sets the extra last slot
	// when Other is true, else no slot at all (all zeros).
	Categories []string `json:"categories,omitempty"`
	Other      bool     `json:"other,omitempty"`
}

// Width returns the number of input values the column gives.
func (c InputColumn) Width() int {
	if len(c.Categories) == 0 {
		return 1
	}
	if c.Other {
		return len(c.Categories) + 1
	}
	return len(c.Categories)
}

// Fills reports whether a missing value is replaced by Fill.
func (c InputColumn) Fills() bool {
	return c.Missing == ColumnMean || c.Missing == ColumnMedian || c.Missing == ColumnConstant
}

// Clip returns v clipped to the column's bounds.
func (c InputColumn) Clip(v float32) float32 {
	if c.Lo != nil && v < *c.Lo {
		v = *c.Lo
	}
	if c.Hi != nil && v > *c.Hi {
		v = *c.Hi
	}
	return v
}

// Category returns the one-hot slot of value s, or -1 when s is in no
// category and the column has no Other slot.
func (c InputColumn) Category(s string) int {
	for i, name := range c.Categories {
		if name == s {
			return i
		}
	}
	if c.Other {
		return len(c.Categories)
	}
	return -1
}

// ColumnsWidth returns the input width a list of columns gives.
func ColumnsWidth(cols []InputColumn) int {
	n := 0
	for _, c := range cols {
		n += c.Width()
	}
	return n
}

// checkColumns checks s.Columns against the input size.
func (s Spec) checkColumns(inSize int) error {
	if len(s.Columns) == 0 {
		return nil
	}
	if len(s.Input) != 1 {
		return fmt.Errorf("columns need a 1-D input, not %v", s.Input)
	}
	names := make(map[string]bool, len(s.Columns))
	width := 0
	for i, c := range s.Columns {
		if c.Name == "" || names[c.Name] {
			return fmt.Errorf("column %d: name %q is empty or repeated", i, c.Name)
		}
		names[c.Name] = true
		switch c.Missing {
		case "", ColumnReject, ColumnDrop, ColumnMean, ColumnMedian, ColumnConstant:
		default:
			return fmt.Errorf("column %q: missing %q is not reject, drop, mean, median or constant", c.Name, c.Missing)
		}
		finite := func(v float32) bool { return !math.IsNaN(float64(v)) && !math.IsInf(float64(v), 0) }
		if !finite(c.Fill) || (c.Lo != nil && !finite(*c.Lo)) || (c.Hi != nil && !finite(*c.Hi)) {
			return fmt.Errorf("column %q: fill and clip bounds must be finite", c.Name)
		}
		if c.Lo != nil && c.Hi != nil && *c.Lo > *c.Hi {
			return fmt.Errorf("column %q: clip bounds %v > %v", c.Name, *c.Lo, *c.Hi)
		}
		if len(c.Categories) > MaxCategories {
			return fmt.Errorf("column %q: %d categories, more than %d", c.Name, len(c.Categories), MaxCategories)
		}
		seen := make(map[string]bool, len(c.Categories))
		for _, cat := range c.Categories {
			if seen[cat] {
				return fmt.Errorf("column %q: category %q twice", c.Name, cat)
			}
			seen[cat] = true
		}
		if c.Other && len(c.Categories) == 0 {
			return fmt.Errorf("column %q: other without categories", c.Name)
		}
		width += c.Width()
	}
	if width != inSize {
		return fmt.Errorf("columns give %d input values, the input has %d", width, inSize)
	}
	return nil
}

// cloneColumns returns a deep copy of cols.
func cloneColumns(cols []InputColumn) []InputColumn {
	if cols == nil {
		return nil
	}
	out := make([]InputColumn, len(cols))
	for i, c := range cols {
		c.Categories = append([]string(nil), c.Categories...)
		if c.Lo != nil {
			lo := *c.Lo
			c.Lo = &lo
		}
		if c.Hi != nil {
			hi := *c.Hi
			c.Hi = &hi
		}
		out[i] = c
	}
	return out
}
