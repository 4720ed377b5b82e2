// Package coordinator is fedge's replicated control plane: the Raft FSM that
// holds the fleet, the round engine that runs on the leader, the server
// strategies, the model registry, fleet rollouts and the admin API. With
// Config.MetricsListen set, a node also serves Prometheus metrics (Raft,
// rounds, agents, enrollments, rollouts), /healthz and /readyz over HTTP.
package coordinator
