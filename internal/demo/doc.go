// Package demo runs fedge's end-to-end demonstration on one machine: a
// 3-coordinator cluster and a fleet of agent processes on loopback, each
// agent holding a non-IID shard of real MNIST, a secure-aggregation training
// job of the 2nn until it passes the target test accuracy, a canary rollout
// of the result, and a prediction served by an agent over HTTP. It is what
// `fedge dev` and `make demo` run.
package demo
