// Command fedge is fedge's one binary: `fedge coordinator` and `fedge agent`
// run the daemons, `fedge init` bootstraps a cluster's credentials, and the
// other verbs are the admin CLI (cluster, tokens, agents, jobs, rounds,
// models, rollout, admin-cert), which talk to any coordinator over QUIC with
// an operator certificate and follow redirects to the leader.
//
// main.go only parses the verb and wires; each command lives in its own
// file (cmd_*.go) and shares the flag parsing, admin client and output
// helpers of cli.go and output.go. Admin verbs print human tables by
// default and the response JSON with -json, and exit with codes scripts can
// rely on: 0 success, 1 operation failed, 2 usage error, 3 not found,
// 4 cluster unreachable (or without a leader).
package main
