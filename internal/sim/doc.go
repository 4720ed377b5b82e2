// Package sim is `fedge simulate`: many virtual agents in one process, each
// with its own identity (an Ed25519 key, enrolled with a join token of its
// own, its own certificate), its own data shard, local training and SecAgg+
// client, talking QUIC to a real cluster or to an in-process one
// (internal/inproc).
//
// Virtual agents speak the agent protocol of the agent package, but are
// light so that thousands fit in one process: the dataset is read once
// and each agent holds the indices of its shard; no agent serves inference
// or keeps a store; local training and masking run on a bounded worker
// pool; sessions are dialed from a few shared UDP sockets
// (protocol.Dialer); and one model cache serves every agent's download of
// a version (the first agent that needs it downloads it, as a lossless
// delta against the version before when the cluster offers one).
//
// A run is repeatable: local training, the stochastic rounding of the
// fixed-point encoding and the distributed DP noise draw from generators
// seeded by (seed, agent, round), and the job's initial model from the
// seed, so with every agent in every round (fraction 1) the committed
// models, and the accuracy the simulator measures on its test set, are
// the same for the same seed. Seeded noise is for research: it protects
// nothing, since the seed is known.
package sim
