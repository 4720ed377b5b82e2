// Package data reads the datasets an agent trains on (MNIST IDX files, CSV
// tables, graphs), preprocesses them (missing values, standardization,
// min-max scaling) and partitions them across simulated clients (IID, the
// FedAvg paper's pathological non-IID, Dirichlet).
//
// Readers of untrusted bytes (ReadIDXImages, ReadIDXLabels, ReadCSV,
// ReadGraph) validate as they go, never panic, bound their allocations by
// configurable limits, and return errors that wrap the sentinel errors
// (ErrFormat, ErrTruncated, ErrLimit, ...) with the line number of text
// inputs (LineError).
//
// # Image folders
//
// ReadImageFolder reads the folder-per-class convention
// (root/<class>/<file>.png|.jpg|.jpeg) and DecodeImage preprocesses one
// image the same way (channels, Catmull-Rom resize, [0, 1], channels
// first), so an agent serving an uploaded image computes exactly what it
// trained on. Both check an image's declared size before decoding it
// (ImageOptions.MaxPixels) and ReadImageFolder bounds the file count
// (MaxImages); a file that does not decode is an error naming it.
//
// # Federated preprocessing
//
// Standardization needs only per-feature counts, sums and sums of squares,
// which add across clients: each agent computes ComputeStats on its data and
// submits Stats.Vector() (or Vector32) to the secure aggregation; the
// aggregated sum becomes global Stats through StatsFromVector, from which
// every agent builds the same Standardizer. The summands grow with the data
// (a sum of squares reaches count·max x²), so the aggregation's fixed-point
// range must cover them, or agents divide the vector by an agreed constant
// and multiply the sum back. Minima and maxima are not sums: a federated
// min-max scaling uses agreed bounds or MomentBounds (see Stats).
//
// Every function that takes a seed is deterministic given its arguments.
package data
