// Package safetensors reads and writes the safetensors file format
// (Hugging Face's: an 8-byte little-endian header length, a JSON header
// naming each tensor's dtype, shape and byte range, then the raw data) to
// and from fedge's representation of a model: one flat []float32 and an
// ordered layout of named tensors (tensor.ExternalTensor).
//
// Engine models (the layers fedge runs) travel as the state_dict PyTorch
// would hold for the same architecture: WriteEngineModel and
// ReadEngineModel name and lay out the tensors as tensor/statedict says
// ("1.weight" [200, 784] for the 2nn's first Linear, and so on) and keep
// the Spec in the metadata under MetaSpec.
//
// Only the F32 dtype is accepted, on read and on write: fedge aggregates,
// masks and clips float32 vectors, and a silent conversion from F16, BF16
// or F64 would change the weights a trainer sees. Files holding any other
// dtype (including the I64 buffers PyTorch keeps, such as batch norm's
// num_batches_tracked) are refused with ErrDType; a trainer keeps such
// tensors to itself.
//
// Reading is bounded and never panics on untrusted bytes: the header is at
// most MaxHeaderBytes, offsets must tile the data exactly, and the total
// size is checked against the caller's limit before the parameter vector
// is allocated. The data streams straight into the flat vector and out of
// it, without an intermediate copy of the whole file.
package safetensors
