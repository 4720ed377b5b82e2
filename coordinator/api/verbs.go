package api

// Verbs name the admin calls on the wire (protocol.AdminRequest.Verb, with
// a JSON body). The Client's methods are the way to make them; the names
// are exported for the server's table and for tools that log calls.
const (
	VerbClusterStatus = "cluster.status"
	VerbClusterJoin   = "cluster.join"
	VerbClusterRemove = "cluster.remove"
	VerbTokensCreate  = "tokens.create"
	VerbTokensList    = "tokens.list"
	VerbTokensRevoke  = "tokens.revoke"
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
	// VerbModelsImport carries a model file: the client sends it on a bulk
	// stream opened with the AdminRequest (Models().Import).
	VerbModelsImport  = "models.import"
	VerbRolloutStart  = "rollout.start"
	VerbRolloutStatus = "rollout.status"
	VerbRolloutAction = "rollout.action"
	VerbAdminCert     = "admin.cert"
	VerbAdminsList    = "admins.list"
	VerbAdminsRevoke  = "admins.revoke"
	VerbAuditList     = "audit.list"
	// VerbConsoleLogin mints a one-time login link to the web console of
	// the coordinator that answers (Console().Login).
	VerbConsoleLogin = "console.login"
)

// ConsistentPrefix, in front of a read verb on the wire, asks for a
// linearizable read: the leader answers after a Raft barrier. The Client
// adds it for QueryOptions{Consistent: true}.
const ConsistentPrefix = "consistent:"
