// Package dp provides differential privacy for federated rounds: per-client
// L2 clipping (fixed or adaptive), distributed Gaussian noise in the
// fixed-point domain, and an RDP accountant for the subsampled Gaussian
// mechanism.
package dp
