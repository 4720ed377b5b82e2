package dp

import "errors"

// Sentinel errors; functions wrap them with their own name, so compare with
// errors.Is.
var (
	// ErrInvalidArgument reports a parameter outside its documented domain
	// (a negative noise multiplier, a sampling rate above 1, a NaN, ...).
	ErrInvalidArgument = errors.New("dp: invalid argument")
	// ErrCorrupt reports serialized state that cannot be decoded.
	ErrCorrupt = errors.New("dp: corrupt encoding")
	// ErrBudgetExhausted reports that spending a round would take the
	// cumulative epsilon above the target of a Budget.
	ErrBudgetExhausted = errors.New("dp: privacy budget exhausted")
	// ErrBudgetUnreachable reports that no noise multiplier up to
	// MaxNoiseMultiplier meets the requested (epsilon, delta).
	ErrBudgetUnreachable = errors.New("dp: privacy budget unreachable")
)
