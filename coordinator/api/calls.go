package api

import "context"

// Cluster returns the calls about the coordinators themselves.
func (c *Client) Cluster() *ClusterCalls { return &ClusterCalls{c} }

// Tokens returns the join-token calls.
func (c *Client) Tokens() *TokenCalls { return &TokenCalls{c} }

// Agents returns the calls about enrolled agents.
func (c *Client) Agents() *AgentCalls { return &AgentCalls{c} }

// Jobs returns the training-job calls.
func (c *Client) Jobs() *JobCalls { return &JobCalls{c} }

// Rounds returns the round-record calls.
func (c *Client) Rounds() *RoundCalls { return &RoundCalls{c} }

// Models returns the model-registry calls.
func (c *Client) Models() *ModelCalls { return &ModelCalls{c} }

// Rollouts returns the rollout calls.
func (c *Client) Rollouts() *RolloutCalls { return &RolloutCalls{c} }

// Admins returns the operator-credential calls.
func (c *Client) Admins() *AdminCalls { return &AdminCalls{c} }

// Console returns the web-console calls.
func (c *Client) Console() *ConsoleCalls { return &ConsoleCalls{c} }

// call is one typed admin call that writes.
func call[Resp any](ctx context.Context, c *Client, verb string, req any) (Resp, error) {
	var resp Resp
	err := c.Call(ctx, verb, QueryOptions{}, req, &resp)
	return resp, err
}

// read is one typed admin call that changes nothing (Client.Read).
func read[Resp any](ctx context.Context, c *Client, verb string, q QueryOptions, req any) (Resp, error) {
	var resp Resp
	err := c.Read(ctx, verb, q, req, &resp)
	return resp, err
}

// ClusterCalls are the calls about the coordinators.
type ClusterCalls struct{ c *Client }

// Status is the answering coordinator's view of the cluster.
func (x *ClusterCalls) Status(ctx context.Context, q QueryOptions) (ClusterStatus, error) {
	return read[ClusterStatus](ctx, x.c, VerbClusterStatus, q, nil)
}

// Join adds a voter (its data dir made with its credentials).
func (x *ClusterCalls) Join(ctx context.Context, r JoinRequest) error {
	return x.c.Call(ctx, VerbClusterJoin, QueryOptions{}, r, nil)
}

// Remove removes a server from the Raft configuration.
func (x *ClusterCalls) Remove(ctx context.Context, id string) error {
	return x.c.Call(ctx, VerbClusterRemove, QueryOptions{}, IDRequest{ID: id}, nil)
}

// TokenCalls are the join-token calls.
type TokenCalls struct{ c *Client }

// Create makes a one-time join token (shown only in this answer).
func (x *TokenCalls) Create(ctx context.Context, r TokenRequest) (TokenResponse, error) {
	return call[TokenResponse](ctx, x.c, VerbTokensCreate, r)
}

// List lists the tokens the cluster keeps (never the tokens themselves).
func (x *TokenCalls) List(ctx context.Context, q QueryOptions) ([]Token, error) {
	return read[[]Token](ctx, x.c, VerbTokensList, q, nil)
}

// Revoke revokes an unused token.
func (x *TokenCalls) Revoke(ctx context.Context, id string) error {
	return x.c.Call(ctx, VerbTokensRevoke, QueryOptions{}, IDRequest{ID: id}, nil)
}

// AgentCalls are the calls about enrolled agents.
type AgentCalls struct{ c *Client }

// List lists every enrolled agent with its connection state.
func (x *AgentCalls) List(ctx context.Context, q QueryOptions) ([]Agent, error) {
	return read[[]Agent](ctx, x.c, VerbAgentsList, q, nil)
}

// Show returns one agent.
func (x *AgentCalls) Show(ctx context.Context, id string, q QueryOptions) (Agent, error) {
	return read[Agent](ctx, x.c, VerbAgentsShow, q, IDRequest{ID: id})
}

// Revoke revokes an agent's certificate and cuts its session at once.
func (x *AgentCalls) Revoke(ctx context.Context, id string) error {
	return x.c.Call(ctx, VerbAgentsRevoke, QueryOptions{}, IDRequest{ID: id}, nil)
}

// Label replaces an agent's labels.
func (x *AgentCalls) Label(ctx context.Context, r LabelRequest) error {
	return x.c.Call(ctx, VerbAgentsLabel, QueryOptions{}, r, nil)
}

// JobCalls are the training-job calls.
type JobCalls struct{ c *Client }

// Start starts a training job; the answer carries its ID and the spec
// with every default filled in.
func (x *JobCalls) Start(ctx context.Context, spec JobSpec) (Job, error) {
	return call[Job](ctx, x.c, VerbJobsStart, spec)
}

// List lists the jobs.
func (x *JobCalls) List(ctx context.Context, q QueryOptions) ([]Job, error) {
	return read[[]Job](ctx, x.c, VerbJobsList, q, nil)
}

// Status returns one job, with why it waits if no round runs.
func (x *JobCalls) Status(ctx context.Context, id string, q QueryOptions) (Job, error) {
	return read[Job](ctx, x.c, VerbJobsStatus, q, IDRequest{ID: id})
}

// Stop stops a running job.
func (x *JobCalls) Stop(ctx context.Context, id string) error {
	return x.c.Call(ctx, VerbJobsStop, QueryOptions{}, IDRequest{ID: id}, nil)
}

// RoundCalls are the round-record calls.
type RoundCalls struct{ c *Client }

// List lists rounds, oldest first (a job's, or all).
func (x *RoundCalls) List(ctx context.Context, r RoundsRequest, q QueryOptions) ([]Round, error) {
	return read[[]Round](ctx, x.c, VerbRoundsList, q, r)
}

// Show returns one round by ID.
func (x *RoundCalls) Show(ctx context.Context, id uint64, q QueryOptions) (Round, error) {
	return read[Round](ctx, x.c, VerbRoundsShow, q, VersionRequest{Version: id})
}

// ModelCalls are the model-registry calls.
type ModelCalls struct{ c *Client }

// List lists the committed versions.
func (x *ModelCalls) List(ctx context.Context, q QueryOptions) ([]Model, error) {
	return read[[]Model](ctx, x.c, VerbModelsList, q, nil)
}

// Show returns one version.
func (x *ModelCalls) Show(ctx context.Context, version uint64, q QueryOptions) (Model, error) {
	return read[Model](ctx, x.c, VerbModelsShow, q, VersionRequest{Version: version})
}

// Pin keeps (or, pinned false, releases) a version past retention.
func (x *ModelCalls) Pin(ctx context.Context, version uint64, pinned bool) error {
	return x.c.Call(ctx, VerbModelsPin, QueryOptions{}, VersionRequest{Version: version, Pinned: pinned}, nil)
}

// RolloutCalls are the rollout calls.
type RolloutCalls struct{ c *Client }

// Start starts a rollout of a committed version.
func (x *RolloutCalls) Start(ctx context.Context, r RolloutRequest) (Rollout, error) {
	return call[Rollout](ctx, x.c, VerbRolloutStart, r)
}

// Status lists every rollout, oldest first, with why a running one waits.
func (x *RolloutCalls) Status(ctx context.Context, q QueryOptions) ([]Rollout, error) {
	return read[[]Rollout](ctx, x.c, VerbRolloutStatus, q, nil)
}

// Act pauses, resumes, promotes or rolls back a rollout.
func (x *RolloutCalls) Act(ctx context.Context, r RolloutActionRequest) error {
	return x.c.Call(ctx, VerbRolloutAction, QueryOptions{}, r, nil)
}

// AdminCalls are the operator-credential calls.
type AdminCalls struct{ c *Client }

// Issue asks the cluster CA for an operator certificate for a public key.
func (x *AdminCalls) Issue(ctx context.Context, r AdminCertRequest) (AdminCertResponse, error) {
	return call[AdminCertResponse](ctx, x.c, VerbAdminCert, r)
}

// List lists the operator certificates the cluster recorded.
func (x *AdminCalls) List(ctx context.Context, q QueryOptions) ([]Admin, error) {
	return read[[]Admin](ctx, x.c, VerbAdminsList, q, nil)
}

// Revoke revokes certificates by name or serial.
func (x *AdminCalls) Revoke(ctx context.Context, r AdminRevokeRequest) (AdminRevokeResponse, error) {
	return call[AdminRevokeResponse](ctx, x.c, VerbAdminsRevoke, r)
}

// Audit lists the audit trail (credentials and operators' actions), oldest first.
func (x *AdminCalls) Audit(ctx context.Context, r AuditRequest, q QueryOptions) ([]AuditEntry, error) {
	return read[[]AuditEntry](ctx, x.c, VerbAuditList, q, r)
}

// ConsoleCalls are the web-console calls.
type ConsoleCalls struct{ c *Client }

// Login mints a one-time login link to the console of the coordinator
// the client talks to (it fails, with a bad request, on one that serves
// no console).
func (x *ConsoleCalls) Login(ctx context.Context, r ConsoleLoginRequest) (ConsoleLoginResponse, error) {
	return call[ConsoleLoginResponse](ctx, x.c, VerbConsoleLogin, r)
}
