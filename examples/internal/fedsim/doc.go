// Package fedsim holds what the federated simulations in examples/ share:
// a fleet of simulated clients, each with its own Ed25519 identity key, and
// one aggregation round over their updates — either real SecAgg+ (the five
// stages of crypto/secagg driven in memory, every message passed through its
// binary encoding as on the wire, inputs encoded by the same Quantizer
// settings as the coordinator's round engine) or the plain example-weighted
// mean the engine computes when secure aggregation is off. The clients'
// local training runs on internal/workpool, the pool fedge simulate uses.
//
// It simulates the network away, nothing else: the masks, shares, key
// agreements, signatures, quantization and unmasking are the production
// code's. The in-process cluster with real QUIC and Raft is
// internal/testcluster and `fedge dev`.
package fedsim
