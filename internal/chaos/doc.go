// Package chaos is fedge's fault suite: scenarios run against a real
// cluster of fedge processes on loopback (internal/demo's Cluster) —
// kill -9 of the leader mid-round, kill -9 and immediate restart of a
// follower, a leader frozen with SIGSTOP, agents killed mid-round, a full
// restart, an unauthenticated connection flood and connections that race a
// coordinator's start. Each asserts that no committed model version is
// lost or duplicated and measures how long the cluster takes to recover.
//
// The tests carry the build tag "chaos": `make chaos` runs them (they take
// minutes); `make test` does not.
package chaos
