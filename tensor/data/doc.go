// Package data reads the datasets an agent trains on (MNIST IDX files, CSV
// tables, graphs), preprocesses them (missing values, standardization,
// min-max scaling) and partitions them across simulated clients (IID, the
// FedAvg paper's pathological non-IID, Dirichlet).
package data
