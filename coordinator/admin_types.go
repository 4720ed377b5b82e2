package coordinator

import "time"

// Token states in TokenInfo.State.
const (
	TokenValid   = "valid"
	TokenUsed    = "used"
	TokenExpired = "expired"
	TokenRevoked = "revoked"
)

// TokenInfo is a join token as tokens.list shows it: never the token or
// its secret, only its ID and the first bytes of the stored hash.
type TokenInfo struct {
	ID         string            `json:"id"`
	HashPrefix string            `json:"hash_prefix"` // first 4 bytes of the secret's SHA-256, hex
	Labels     map[string]string `json:"labels,omitempty"`
	State      string            `json:"state"` // valid, used, expired or revoked
	CreatedAt  time.Time         `json:"created_at"`
	CreatedBy  string            `json:"created_by,omitempty"`
	Expires    time.Time         `json:"expires"`
	Used       bool              `json:"used"`
	UsedBy     string            `json:"used_by,omitempty"`
	Revoked    bool              `json:"revoked"`
	RevokedAt  time.Time         `json:"revoked_at,omitempty"`
	RevokedBy  string            `json:"revoked_by,omitempty"`
}

// AdminInfo is an operator certificate as admins.list shows it.
type AdminInfo struct {
	Serial     string    `json:"serial"`
	Name       string    `json:"name,omitempty"`
	CreatedAt  time.Time `json:"created_at,omitempty"`
	CreatedBy  string    `json:"created_by,omitempty"`
	Expires    time.Time `json:"expires,omitempty"`
	Unrecorded bool      `json:"unrecorded,omitempty"` // revoked by serial, never issued through the cluster
	Revoked    bool      `json:"revoked"`
	RevokedAt  time.Time `json:"revoked_at,omitempty"`
	RevokedBy  string    `json:"revoked_by,omitempty"`
}

// AdminRevokeRequest revokes one certificate by Serial (recorded or not)
// or every recorded certificate of Name; exactly one is set.
type AdminRevokeRequest struct {
	Name   string `json:"name,omitempty"`
	Serial string `json:"serial,omitempty"`
}

// AdminRevokeResponse lists the serials revoked by the call (empty when
// they all were already).
type AdminRevokeResponse struct {
	Revoked []string `json:"revoked"`
}

// AuditRequest filters audit.list.
type AuditRequest struct {
	Limit int `json:"limit,omitempty"` // the last Limit records; 0 means all kept
}

// AuditEntry is one credential action: who did what to which token or
// admin certificate, and when.
type AuditEntry struct {
	At     time.Time `json:"at"`
	By     string    `json:"by,omitempty"`
	Action string    `json:"action"`
	Target string    `json:"target"`
	Detail string    `json:"detail,omitempty"`
}

// Admin verbs, carried in protocol.AdminRequest.Verb with a JSON body.
const (
	VerbClusterStatus = "cluster.status"
	VerbClusterJoin   = "cluster.join"
	VerbClusterRemove = "cluster.remove"
	VerbTokensCreate  = "tokens.create"
	VerbAgentsList    = "agents.list"
	VerbAgentsShow    = "agents.show"
	VerbAgentsRevoke  = "agents.revoke"
	VerbAgentsLabel   = "agents.label"
	VerbJobsStart     = "jobs.start"
	VerbJobsList      = "jobs.list"
	VerbJobsStatus    = "jobs.status"
	VerbJobsStop      = "jobs.stop"
	VerbRoundsList    = "rounds.list"
	VerbRoundsShow    = "rounds.show"
	VerbModelsList    = "models.list"
	VerbModelsShow    = "models.show"
	VerbModelsPin     = "models.pin"
	VerbRolloutStart  = "rollout.start"
	VerbRolloutStatus = "rollout.status"
	VerbRolloutAction = "rollout.action" // pause, resume, promote, rollback
	VerbAdminCert     = "admin.cert"
	VerbTokensList    = "tokens.list"
	VerbTokensRevoke  = "tokens.revoke"
	VerbAdminsList    = "admins.list"
	VerbAdminsRevoke  = "admins.revoke"
	VerbAuditList     = "audit.list"
)

// ClusterStatus answers cluster.status.
type ClusterStatus struct {
	Cluster         string       `json:"cluster"`
	Node            string       `json:"node"`
	LeaderID        string       `json:"leader_id"`
	LeaderAddr      string       `json:"leader_addr"`
	Servers         []ServerInfo `json:"servers"`
	Term            uint64       `json:"term"`
	LastIndex       uint64       `json:"last_index"`
	AppliedIndex    uint64       `json:"applied_index"`
	ConnectedAgents int          `json:"connected_agents"`
	Stable          uint64       `json:"stable_model"`
}

// ServerInfo is one Raft server.
type ServerInfo struct {
	ID       string `json:"id"`
	Addr     string `json:"addr"`
	Suffrage string `json:"suffrage"`
	Leader   bool   `json:"leader"`
}

// IDRequest names one object.
type IDRequest struct {
	ID string `json:"id"`
}

// VersionRequest names one model version.
type VersionRequest struct {
	Version uint64 `json:"version"`
	Pinned  bool   `json:"pinned,omitempty"`
}

// TokenRequest asks for a join token. A TTL above the cluster's maximum
// (max_token_ttl, 7 days by default) is refused.
type TokenRequest struct {
	TTL    Duration          `json:"ttl,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
}

// TokenResponse carries a new join token: shown once, never stored.
type TokenResponse struct {
	Token   string    `json:"token"`
	ID      string    `json:"id"`
	Expires time.Time `json:"expires"`
}

// LabelRequest replaces an agent's labels.
type LabelRequest struct {
	ID     string            `json:"id"`
	Labels map[string]string `json:"labels"`
}

// AgentInfo is an agent as the admin sees it.
type AgentInfo struct {
	AgentRecord
	Connected bool `json:"connected"`
	// Served is the model version the agent reported serving on its
	// current session (0 when disconnected or serving none).
	Served uint64 `json:"served,omitempty"`
	// Serving is the version the agent should serve (the stable model or
	// its rollout cohort's candidate).
	Serving uint64 `json:"serving_target"`
}

// RoundsRequest filters rounds.list.
type RoundsRequest struct {
	Job   string `json:"job,omitempty"`
	Limit int    `json:"limit,omitempty"`
}

// RolloutRequest starts a rollout.
type RolloutRequest struct {
	Model   uint64   `json:"model"`
	Cohorts []Cohort `json:"cohorts"`
	Gate    string   `json:"gate"`
}

// RolloutActionRequest is an operator's decision on the active rollout.
type RolloutActionRequest struct {
	ID     string `json:"id,omitempty"` // default: the active rollout
	Action string `json:"action"`       // pause, resume, promote, rollback
	By     string `json:"by,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// AdminCertRequest asks the cluster CA for an operator certificate.
type AdminCertRequest struct {
	Name      string `json:"name"`
	PublicKey []byte `json:"public_key"` // Ed25519, 32 bytes
}

// AdminCertResponse carries the issued certificate (DER) and the CA's.
type AdminCertResponse struct {
	Cert   []byte `json:"cert"`
	CACert []byte `json:"ca_cert"`
}

// JoinRequest adds a voter.
type JoinRequest struct {
	ID   string `json:"id"`
	Addr string `json:"addr"`
}
