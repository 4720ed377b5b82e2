package data

import (
	"fmt"
	"math"
	"slices"

	"github.com/fedge/fedge/tensor"
)

// HoldOut splits ds at random into a training part and a held-out part of
// round(fraction·Len()) examples, for an agent's local evaluation. Both
// keep the examples' original order; the split depends only on (ds.Len(),
// fraction, seed). It panics unless 0 <= fraction <= 1.
func HoldOut(ds *tensor.Dataset, fraction float64, seed uint64) (train, heldout *tensor.Dataset) {
	if !(fraction >= 0 && fraction <= 1) {
		panic(fmt.Sprintf("data.HoldOut: fraction %v outside [0,1]", fraction))
	}
	n := ds.Len()
	k := int(math.Round(fraction * float64(n)))
	perm := newRand(seed).Perm(n)
	held, kept := perm[:k], perm[k:]
	slices.Sort(held)
	slices.Sort(kept)
	return ds.Subset(kept), ds.Subset(held)
}
