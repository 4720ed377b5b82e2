// Package api is fedge's admin API for Go programs: the typed requests and
// answers of every admin call, and a Client with one method per call
// (Jobs().Start, Rollouts().Status, …) that dials the coordinators over
// QUIC with an operator certificate, retries while a node starts or an
// election runs, follows the leader, and takes read consistency as an
// explicit option. The fedge CLI is built on it; so can any Go program.
//
// It imports neither Raft nor bbolt: a program that imports only this
// package links the transport (quic-go), the identity helpers and the
// tensor model format, not the coordinator's replicated state machine.
//
// A program needs the cluster's coordinator addresses and an operator
// credential folder (ca.pem, admin.pem, admin.key, as `fedge init` writes
// it):
//
//	c, err := api.Load("cluster/admin", []string{"127.0.0.1:7001"})
//	job, err := c.Jobs().Start(ctx, api.JobSpec{Name: "mnist", Model: "2nn", Rounds: 5})
//	rounds, err := c.Rounds().List(ctx, api.RoundsRequest{Job: job.ID})
package api
