// Package testcluster runs a real fedge cluster inside a test process:
// coordinators on loopback QUIC with real Raft on bbolt in temporary
// folders, and agents (package agent, unmodified) that enroll with join
// tokens, train on shards of real MNIST and take part in SecAgg+ rounds over
// real QUIC. It is a test harness, not API: the cluster is internal/inproc's,
// whose methods here fail the test instead of returning errors.
package testcluster
