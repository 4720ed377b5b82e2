package tensor

import "fmt"

// Dataset is a set of labelled examples held as one row-major matrix: row i
// of X (Features() values) is example i and Y[i] its class.
type Dataset struct {
	X       []float32 // Len() × Features(), row-major
	Y       []int32   // class of each example, 0 <= Y[i] < Classes
	Shape   []int     // shape of one example, e.g. [1 28 28]; product = Features()
	Classes int       // number of classes
}

// Len returns the number of examples.
func (d *Dataset) Len() int { return len(d.Y) }

// Features returns the number of values in one example.
func (d *Dataset) Features() int {
	f := 1
	for _, s := range d.Shape {
		f *= s
	}
	return f
}

// Row returns example i's values (a view into X).
func (d *Dataset) Row(i int) []float32 {
	f := d.Features()
	return d.X[i*f : (i+1)*f : (i+1)*f]
}

// Subset returns a new Dataset holding copies of the examples idx, in order.
func (d *Dataset) Subset(idx []int) *Dataset {
	f := d.Features()
	out := &Dataset{
		X:       make([]float32, len(idx)*f),
		Y:       make([]int32, len(idx)),
		Shape:   append([]int(nil), d.Shape...),
		Classes: d.Classes,
	}
	for j, i := range idx {
		copy(out.X[j*f:(j+1)*f], d.X[i*f:(i+1)*f])
		out.Y[j] = d.Y[i]
	}
	return out
}

// Validate reports whether the fields agree with each other.
func (d *Dataset) Validate() error {
	f := d.Features()
	if f <= 0 {
		return fmt.Errorf("tensor.Dataset: bad shape %v", d.Shape)
	}
	if len(d.X) != len(d.Y)*f {
		return fmt.Errorf("tensor.Dataset: %d values for %d examples of %d features", len(d.X), len(d.Y), f)
	}
	for i, y := range d.Y {
		if y < 0 || int(y) >= d.Classes {
			return fmt.Errorf("tensor.Dataset: label %d of example %d outside [0,%d)", y, i, d.Classes)
		}
	}
	return nil
}
