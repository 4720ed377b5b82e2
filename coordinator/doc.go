// Package coordinator is fedge's replicated control plane: the Raft FSM that
// holds the fleet, the round engine that runs on the leader, the server
// strategies, the model registry, fleet rollouts and the admin API's server.
//
// # Where to start reading
//
// Start at NewNode in node.go: it wires every other part, in this order.
// Then read State in state.go (what the cluster remembers) and Engine.step
// in engine.go (what the leader does with it). The rest hangs off those
// three.
//
// # The parts
//
// Node (node.go, node_agent.go) is one coordinator process. NewNode loads
// the node's credentials (pki.go), opens one QUIC listener
// (protocol.Listen) and registers a handler per ALPN: agents
// (agentHandler, node_agent.go), enrollment with a join token
// (enrollHandler), operators (adminHandler, node_admin.go) and peer
// coordinators (peerHandler, forward.go). Raft's own traffic rides the same
// listener through quicStreamLayer (streamlayer.go). It then opens the Raft
// replica and, while it leads, runs the round engine (Node.leadership).
//
// The FSM and its records (fsm.go, fsm_apply.go, fsm_access.go,
// fsm_snapshot.go, state.go) are the replicated state. Every change is a
// Raft log entry: a command-type byte, a JSON header and an optional
// payload, encoded by encodeEntry; a model version's bytes are never in
// it (since FSM version 3): they are a content-addressed blob in the
// node's BlobStore (blobstore.go), replicated between nodes over
// fedge-peer/1 (blob_sync.go) and named by hash in the entry. FSM.Apply switches on the
// type and hands off to its apply function (applyJobCreate and the like) (fsm_apply.go for agents,
// jobs, rounds, models and rollouts; fsm_access.go for admins and token
// revocation), which checks and changes State under the FSM's lock. Readers
// take a consistent view with FSM.Read; FSM.Watch reports applied indexes.
// Snapshots (fsm_snapshot.go) are a versioned binary format that names the
// model blobs by hash (older formats carried them, and still restore). The records (AgentRecord, JobRecord,
// RoundRecord, ModelRecord, RolloutRecord, …) are this package's own and
// never answer an admin call directly; rollout.go holds the State methods
// that say which agent a rollout targets (TargetVersion, CohortAgents).
//
// The Raft replica (raft.go, streamlayer.go) is hashicorp/raft on a bbolt
// log store with file snapshots. replica.apply is the one way to write:
// Node.apply calls it, and so does the engine through its replicator
// interface. Raft's hclog output goes to the node's slog logger with its
// own levels (slogSink).
//
// The admin API server (node_admin.go, node_admin_calls.go,
// node_access.go, admin_convert.go) answers the operator's calls that
// coordinator/api's Client makes. adminRoutes in node_admin.go is the one
// table of calls: for each verb, whether it writes, whether only the
// leader can answer, and its typed handler (apiJobsStart, apiRolloutStart,
// … in node_admin_calls.go; tokens, admins and the audit log in
// node_access.go). Handlers read State and write through Node.apply; the
// answers are api types converted from the records in admin_convert.go.
// A follower forwards writes and leader-only reads to the leader over a
// peer session (forward.go); api_types.go aliases the api types the
// records embed (JobSpec, Cohort, Gate, …).
//
// The round engine (engine.go, round.go, round_train.go, round_eval.go,
// round_stats.go, strategy.go, privacy.go, downloads.go,
// upload.go) runs on the leader only. Engine.run loops over Engine.step,
// which runs one unit of work at a time: a rollout's evaluation round
// (rolloutStep in round_eval.go) if a rollout is running, else a training
// round of the oldest running job (trainRound in round_train.go). It
// reaches agents through the AgentLink interface (the node's agent
// sessions; in-memory twins in tests), invites and selects them, and
// drives each stage of a round (activeRound and runSecAgg in round.go)
// with protocol/stagedriver: a Barrier per stage collects one message per
// agent until a deadline, and stagedriver.SecAgg runs the five SecAgg+
// stages on the secagg server (the agent package's tests run the same
// driver). Uploads arrive as bulk streams (upload.go) and new models go
// out as full files or int8 deltas (downloads.go). The server update is a
// Strategy (strategy.go: FedAvg, FedAvgM, FedAdam/Yogi/Adagrad, and the
// robust median, trimmed mean and Krum);
// differential privacy's noise and budget are in privacy.go; round_stats.go
// runs the secure-sum statistics round that standardizes a job's features.
// A large SecAgg+ training round is sharded (round_group*.go): the leader
// splits its agents into groups, every coordinator (the leader included)
// runs the SecAgg+ stages of one group on agents' sessions with it, and
// the leader adds the group sums it gets back over fedge-peer/1.
// The engine records everything it decides (round start and end, model
// commits, rollout decisions) through Raft, so a new leader continues from
// the log.
//
// Rollouts (rollout.go, round_eval.go) move the fleet from the stable
// model to a candidate cohort by cohort: an evaluation round per stage,
// whose secure sums the gate (api.Gate) judges; the decision is a Raft
// command, and agents learn their target version from State.TargetVersion
// when they connect or hear an announcement. Each model name is a line
// (lines.go) with its own stable version and rollout; an agent that
// reports its served lines hears of each line's target
// (State.TargetVersions).
//
// Metrics (metrics.go, metrics_http.go): with Config.MetricsListen set, a
// node serves Prometheus metrics (Raft, rounds, agents, enrollments,
// rollouts), /healthz and /readyz over HTTP; the engine records rounds
// through a nil-safe engineMetrics.
//
// The PKI (pki.go) creates a cluster (InitCluster: the CA, node and admin
// certificates, the sealed CA key), loads a node's credentials and opens
// the CA so the leader can sign agents' certificates at enrollment and
// renewal (Node.enroll and Node.renew in node_agent.go).
//
// # Who calls whom
//
//	cmd/fedge, internal/demo, tests ──NewNode──▶ Node
//	operator (coordinator/api.Client) ──QUIC admin ALPN──▶ adminHandler ──adminRoutes──▶ api<Verb> handler ──Node.apply──▶ replica ──Raft──▶ FSM.Apply ──▶ apply<Command> ──▶ State
//	follower ──forward (peer ALPN)──▶ leader's peerHandler ──▶ answerAdmin
//	Node.leadership (on the leader) ──▶ Engine.run ──▶ step ──▶ trainRound / rolloutStep ──AgentLink──▶ agents
//	Engine ──replicator.apply──▶ replica (round, model and rollout records)
//	agents ──QUIC agent ALPN──▶ agentHandler ──▶ Engine (joins, uploads, stage messages)
//
// Import arrows point one way: coordinator imports protocol, crypto and
// tensor, and coordinator/api (which imports none of Raft or bbolt, so a
// client program stays light); nothing in the module's library code
// imports coordinator except cmd, internal and examples.
package coordinator
