// Package agent is the daemon that runs on an enterprise host: it enrolls with
// the cluster, keeps its identity and models in a local store, trains on local
// data when a round asks, and serves inference from the current model.
//
// # Running
//
// An agent is a Config (LoadConfig reads a JSON file, Flags binds command-line
// overrides), New and Run:
//
//	cfg, err := agent.LoadConfig("/etc/fedge/agent.json")
//	log, _ := cfg.Logger(os.Stderr)
//	a, err := agent.New(cfg, log) // opens the store, loads the data, binds the HTTP port
//	err = a.Run(ctx)              // until ctx ends (SIGTERM), or ErrRevoked, ...
//
// New fails early and clearly on a configuration error, a missing dataset, a
// corrupt data dir (ErrCorruptStore), a data dir of another program or cluster
// (ErrForeignDataDir), a data dir held by a running agent (ErrStoreLocked), or
// a busy port. Run returns nil when its context ends, after finishing or
// abandoning the current step within Config.ShutdownTimeout, and an error when
// the agent cannot be part of the cluster: ErrRevoked (its certificate is
// refused on several connections in a row), ErrCertExpired, ErrTokenRejected,
// ErrNotEnrolled.
//
// # State
//
// DataDir/agent.db is a bbolt database: a header (magic, format version,
// cluster CA pin), the Ed25519 identity key and agent ID, the certificate and
// the cluster CA, the served model and the previous one (for rollback), the
// last two training base models, the round in progress and lifetime round
// counters. Every change is one fsynced transaction, so kill -9 at any moment
// leaves a valid state; a round interrupted by a restart is abandoned (its
// SecAgg+ secrets lived only in memory, by design).
//
// # The session
//
// On first start the agent creates its key and ID, reads the CA pin from the
// join token, and enrolls over the certificate-less ALPN (fedge-enroll/1),
// checking the returned CA against the pin. It then keeps one mutual-TLS QUIC
// session (fedge-agent/1) with the cluster, trying the configured coordinators
// in turn with jittered exponential backoff (200 ms to 30 s) and following
// redirects to the leader. Over it the agent sends heartbeats; a
// ModelAnnounce reply makes it download that version (resumably, checked
// against the announced hash of tensor.Model.Hash) and swap it in atomically,
// or take it from the store on a rollback. A download names the newest model
// the agent holds (ModelRequest.HaveBase), so the coordinator can send a
// delta against it (protocol/encoding: lossless, or the job's quantized
// push); the agent rebuilds the model on that base's spec. It renews its certificate over the
// session after two thirds of its lifetime. Inference keeps serving while the
// agent is disconnected. The agent serves one model per model line (a
// model name, lines.go): its heartbeats list the lines it serves and those
// Config.Jobs declines, an announce names its line, and each line has its
// served and previous version in the store and its own /v1/models/{name}
// paths; /v1/predict serves the default line, the first it served.
//
// # Rounds
//
// The coordinator pushes RoundInvite (answered with RoundJoin: the agent
// declines when busy, outside Config.TrainingWindow, for a job outside
// Config.Jobs.Allow or without the data),
// then RoundPlan, EvalRequest or StatsRequest, or RoundAbort. A training round trains a
// copy of the plan's model on the local training split (SGD or Adam, FedProx
// term toward the start weights), clips the delta for DP when asked, appends
// the training metrics (protocol.AppendUpdateMetrics), encodes it with the
// round's quantizer, adds distributed discrete Gaussian noise when asked, and
// runs the five SecAgg+ stages (a masked input above
// protocol.MaxInlinePayload goes ahead as a resumable bulk upload). With
// adaptive clipping it inserts its noised clip bit after the delta, and under
// DP noise it sends no training metrics. An evaluation round evaluates the
// candidate and baseline models on the held-out split and sums the counts the
// same way; a statistics round sums each feature's count, sum and sum of
// squares of the training split as exact fixed-point values
// (protocol.EncodeFixed), for a job that standardizes its inputs.
// Only SecAgg+ messages leave the host — masked vectors, public keys,
// encrypted shares, signatures — except in rounds configured without secure
// aggregation (robust strategies), where the update is sent as is.
//
// # Inference
//
// The HTTP server (Config.InferenceListen, loopback by default) serves
// POST /v1/predict ({"inputs": [[...], ...]} to class probabilities and
// argmax), GET /v1/model, GET /healthz and GET /metrics (the agent's
// Prometheus registry, Config.Metrics). Bad input gets 400 with a message, a body over MaxPredictBody 413,
// and a request before any model 503.
package agent
