// Command api-client starts a training job and follows it round by round
// with the coordinator/api package alone: the way a Go program (a
// scheduler, a notebook backend, a CI job) drives a fedge cluster without
// the CLI. It links neither Raft nor bbolt.
//
//	go run ./examples/api-client -coordinators 127.0.0.1:7001 -admin-dir ./cluster/admin -rounds 3
package main
