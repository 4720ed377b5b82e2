// Package inproc runs a real fedge cluster inside one process: Raft
// coordinators on loopback QUIC with bbolt stores in a folder, and agent
// daemons (package agent, unmodified) enrolled with join tokens, training
// on shards of real MNIST or through an external trainer. Start returns
// errors instead of failing a test, so programs (examples/rollout) use it
// as well as the tests, which reach it through internal/testcluster. The
// demo's cluster of separate processes is internal/demo.
package inproc
