package tensor

import "errors"

// Sentinel errors, for errors.Is. Errors returned by this package wrap one
// of them together with the name of the function that failed.
var (
	// ErrInvalidSpec reports a Spec that cannot describe a model: an unknown
	// layer type, a shape that does not fit, a size out of range.
	ErrInvalidSpec = errors.New("tensor: invalid spec")
	// ErrUnknownSpec reports a name NamedSpec does not know.
	ErrUnknownSpec = errors.New("tensor: unknown named spec")
	// ErrShape reports data whose size does not match the model: a feature
	// count, a class count, a slice length.
	ErrShape = errors.New("tensor: shape mismatch")
	// ErrNeedsGraph reports a model with graph layers used on plain
	// examples (use PredictGraph, TrainGraph, EvaluateGraph), or a graph
	// call on a model that has none.
	ErrNeedsGraph = errors.New("tensor: graph layers need a graph")
	// ErrFormat reports model bytes that do not follow the model file
	// format: bad magic, unknown version, truncated or trailing data.
	ErrFormat = errors.New("tensor: malformed model file")
	// ErrChecksum reports a model file whose checksum does not match.
	ErrChecksum = errors.New("tensor: model file checksum mismatch")
	// ErrTooLarge reports a model file larger than the configured limit;
	// it is detected before the memory is allocated.
	ErrTooLarge = errors.New("tensor: model file exceeds size limit")
	// ErrExternalModel reports an engine operation (NewModel, Train,
	// Evaluate, Predict and their graph forms) on an external model, which
	// only an external trainer runs (Spec.IsExternal).
	ErrExternalModel = errors.New("tensor: external model: fedge's engine does not run it")
	// ErrNotDifferentiable reports an input gradient or explanation asked
	// of a model whose input is token ids (an embedding_bag first layer):
	// ids are categories, not quantities, so no gradient runs to them.
	ErrNotDifferentiable = errors.New("tensor: the model's input (token ids) has no gradient")
	// ErrDiverged reports a training loss that became NaN or infinite.
	ErrDiverged = errors.New("tensor: training diverged")
)
