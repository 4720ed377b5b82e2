// Package tensor is fedge's learning engine: float32 tensors, one GEMM entry
// point, layers with forward and backward passes, models described by a small
// JSON spec plus ONE flat parameter vector, optimizers, and the training loop.
//
// Aggregation, compression, masking and serialization all work on the flat
// parameter vector (Model.Params), so none of them needs to know about layers.
// The package imports nothing else of fedge.
package tensor
