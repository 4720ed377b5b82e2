// Command rollout shows fedge's privacy-preserving fleet rollout on the real
// system: three coordinator nodes (hashicorp/raft over loopback QUIC, bbolt
// stores in a temporary folder) and a fleet of agent daemons in one process,
// each agent holding its own shard of MNIST, some labelled tier=canary.
//
//	go run ./examples/rollout
//	go run ./examples/rollout -agents 10 -canaries 5 -v
//
// It trains the 2nn for a few rounds under SecAgg+ (the "base" model), then
//
//	(a) trains one round from it with a destructive learning rate, which
//	    commits a garbage model, and rolls that out: the canaries evaluate
//	    candidate and baseline on their own held-out images, the coordinator
//	    learns only the securely aggregated sums (correct, total, loss), and
//	    the gate "accuracy>=baseline-0.5" rolls it back with no operator
//	    action; every agent returns to the baseline;
//	(b) trains two ordinary rounds from the same base and rolls that model
//	    out: the gate promotes it through the canaries and then the fleet.
//
// It prints each round and each gate decision with its evidence, dumps the
// rolled-back rollout's record and its evaluation round's record, and audits
// every coordinator's replicated state and the coordinators' logs: metrics
// appear only in records that name no agent or at least three (the secure
// sum's minimum), never in an agent's record. It exits non-zero if the bad
// model is not rolled back, the good one not promoted, or the audit finds a
// per-agent figure. It takes about a minute on 2 cores.
package main
