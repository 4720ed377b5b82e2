package secagg

import "fmt"

// AddSums adds src into dst in the ring Z_(2^32), element by element: the
// sum of two groups' unmasked sums is the sum of all their inputs, so a
// round sharded into groups (each aggregated under its own Config) adds
// its group sums with it. A Quantizer checked for the total number of
// summands (Quantizer.Check) keeps the total from wrapping around.
func AddSums(dst, src []uint32) error {
	if len(dst) != len(src) {
		return fmt.Errorf("secagg.AddSums: %w: sums of %d and %d elements", ErrMalformed, len(dst), len(src))
	}
	for i, v := range src {
		dst[i] += v
	}
	return nil
}
