package data

import (
	"errors"
	"fmt"
	"math/rand/v2"
)

// Sentinel errors, for errors.Is. Every error this package returns wraps one
// of them (or an I/O error of the reader it was given).
var (
	// ErrFormat reports input that does not follow the expected format:
	// a wrong magic number, a field that is not a number, a bad node id.
	ErrFormat = errors.New("data: malformed input")
	// ErrTruncated reports input that ends before its header said it would.
	ErrTruncated = errors.New("data: truncated input")
	// ErrLimit reports input whose size exceeds a configured limit. It is
	// checked before the memory is allocated.
	ErrLimit = errors.New("data: input exceeds limit")
	// ErrMismatch reports parts that do not agree with each other: image
	// and label counts, feature counts of two Stats, a dataset's width.
	ErrMismatch = errors.New("data: mismatched inputs")
	// ErrMissingValue reports a missing value under the MissingReject policy,
	// or a column that has no value at all to impute from.
	ErrMissingValue = errors.New("data: missing value")
	// ErrNoBounds reports a min-max scaler asked of Stats that carry no
	// minimum and maximum (Stats rebuilt from a summed vector).
	ErrNoBounds = errors.New("data: stats carry no min/max bounds")
	// ErrPartition reports partitioner arguments that cannot be satisfied.
	ErrPartition = errors.New("data: impossible partition")
)

// LineError locates an error in a text input: the 1-based line and, when
// known, the column name. Use errors.As to get the line number.
type LineError struct {
	Input  string // which input: "csv", "edges", "features", "labels"
	Line   int    // 1-based line number
	Column string // column name, if known
	Err    error  // wraps one of the sentinel errors
}

// Error names the input, line and column, then the cause.
func (e *LineError) Error() string {
	if e.Column != "" {
		return fmt.Sprintf("%s line %d, column %q: %v", e.Input, e.Line, e.Column, e.Err)
	}
	return fmt.Sprintf("%s line %d: %v", e.Input, e.Line, e.Err)
}

// Unwrap returns the cause, for errors.Is and errors.As.
func (e *LineError) Unwrap() error { return e.Err }

// newRand returns the deterministic generator every seeded function uses.
func newRand(seed uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}
