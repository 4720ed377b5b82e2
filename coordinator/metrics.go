package coordinator

import (
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// Buckets, in seconds, of the round histograms: a stage of a small round
// on a LAN takes milliseconds, a training stage minutes.
var (
	roundBuckets = []float64{0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800}
	stageBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300}
	busyBuckets  = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}
	applyBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10}
)

// engineMetrics are the round engine's series. Rounds are recorded by the
// leader that ran them, once, when their end is committed. A nil
// *engineMetrics records nothing (tests build engines without one).
type engineMetrics struct {
	rounds        *prometheus.CounterVec   // kind, state
	duration      *prometheus.HistogramVec // kind, state
	stageDuration *prometheus.HistogramVec // kind, stage
	dropouts      *prometheus.CounterVec   // kind, stage
	participants  *prometheus.GaugeVec     // kind
	bytesIn       *prometheus.CounterVec   // kind
	bytesOut      *prometheus.CounterVec   // kind
	busy          *prometheus.HistogramVec // kind
	decisions     *prometheus.CounterVec   // action
	groups        *prometheus.CounterVec   // coordinator, state
	groupAgents   *prometheus.CounterVec   // coordinator, state
	groupBusy     *prometheus.HistogramVec // coordinator
}

func newEngineMetrics() *engineMetrics {
	return &engineMetrics{
		rounds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fedge_coordinator_rounds_total",
			Help: "Rounds this node ran as leader, by kind (train, eval, stats) and how they ended (committed, failed, aborted).",
		}, []string{"kind", "state"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "fedge_coordinator_round_duration_seconds", Buckets: roundBuckets,
			Help: "Wall time of rounds from start to end, by kind and how they ended.",
		}, []string{"kind", "state"}),
		stageDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "fedge_coordinator_round_stage_duration_seconds", Buckets: stageBuckets,
			Help: "Wall time of each round stage (invite, advertise_keys (includes local training), share_keys, masked_input, consistency_check, unmask; update without secure aggregation), by round kind.",
		}, []string{"kind", "stage"}),
		dropouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fedge_coordinator_round_dropouts_total",
			Help: "Agents expected at a round stage that did not arrive by its deadline (or withdrew), by round kind and stage.",
		}, []string{"kind", "stage"}),
		participants: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fedge_coordinator_round_participants",
			Help: "Agents that joined the last round of each kind this node ran.",
		}, []string{"kind"}),
		bytesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fedge_coordinator_round_bytes_received_total",
			Help: "Bytes of round messages received from agents (masked inputs, keys, shares), by round kind.",
		}, []string{"kind"}),
		bytesOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fedge_coordinator_round_bytes_sent_total",
			Help: "Bytes sent to agents for rounds (stage replies, plans, and the model downloads of the round's agents), by round kind.",
		}, []string{"kind"}),
		busy: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "fedge_coordinator_round_busy_seconds", Buckets: busyBuckets,
			Help: "The coordinator's own work per committed round (decoding, SecAgg+ server steps, aggregation, the server optimizer), waiting for agents excluded, by round kind.",
		}, []string{"kind"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fedge_coordinator_rollout_gate_decisions_total",
			Help: "Rollout decisions the evaluation gate took on this node (advance, promote, rollback, pause).",
		}, []string{"action"}),
		groups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fedge_coordinator_round_groups_total",
			Help: "Groups of sharded rounds this node led, by the coordinator that aggregated them and how they ended (ok: its sum was added; lost: the coordinator or too many of its agents were lost, so its agents counted as dropouts).",
		}, []string{"coordinator", "state"}),
		groupAgents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fedge_coordinator_round_group_agents_total",
			Help: "Agents of sharded rounds' groups this node led, by the coordinator that served them and whether their update is in the round's sum (survived) or not (dropped).",
		}, []string{"coordinator", "state"}),
		groupBusy: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "fedge_coordinator_round_group_busy_seconds", Buckets: busyBuckets,
			Help: "Each group's coordinator's own work (SecAgg+ server steps and summing, waiting for agents excluded) in sharded rounds this node led, by coordinator.",
		}, []string{"coordinator"}),
	}
}

func (m *engineMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.rounds, m.duration, m.stageDuration, m.dropouts, m.participants, m.bytesIn, m.bytesOut, m.busy, m.decisions, m.groups, m.groupAgents, m.groupBusy}
}

// roundEnded records a round whose end (committed or not) was committed.
func (m *engineMetrics) roundEnded(rec *RoundRecord) {
	if m == nil {
		return
	}
	m.rounds.WithLabelValues(rec.Kind, rec.State).Inc()
	if !rec.EndedAt.IsZero() && !rec.StartedAt.IsZero() {
		m.duration.WithLabelValues(rec.Kind, rec.State).Observe(rec.EndedAt.Sub(rec.StartedAt).Seconds())
	}
	for _, s := range rec.Stages {
		m.stageDuration.WithLabelValues(rec.Kind, s.Name).Observe(s.Duration.Seconds())
		// Added even when 0, so every stage's series exists.
		m.dropouts.WithLabelValues(rec.Kind, s.Name).Add(float64(max(s.Dropped, 0)))
	}
	m.participants.WithLabelValues(rec.Kind).Set(float64(len(rec.Participants)))
	m.bytesIn.WithLabelValues(rec.Kind).Add(float64(rec.BytesIn))
	m.bytesOut.WithLabelValues(rec.Kind).Add(float64(rec.BytesOut))
	if s, ok := rec.Metrics["coordinator_seconds"]; ok && rec.State == RoundCommitted {
		m.busy.WithLabelValues(rec.Kind).Observe(s)
	}
	for _, g := range rec.Groups {
		state := "ok"
		if g.Error != "" {
			state = "lost"
		}
		m.groups.WithLabelValues(g.Coordinator, state).Inc()
		m.groupAgents.WithLabelValues(g.Coordinator, "survived").Add(float64(g.Survivors))
		m.groupAgents.WithLabelValues(g.Coordinator, "dropped").Add(float64(max(g.Agents-g.Survivors, 0)))
		if state == "ok" {
			m.groupBusy.WithLabelValues(g.Coordinator).Observe(g.BusySeconds)
		}
	}
}

// decided records a rollout decision of the gate.
func (m *engineMetrics) decided(action string) {
	if m != nil {
		m.decisions.WithLabelValues(action).Inc()
	}
}

// nodeMetrics are a coordinator node's series: the engine's, enrollments,
// Raft's, the connected agents and the replicated state's summary.
type nodeMetrics struct {
	engine      *engineMetrics
	enrollments *prometheus.CounterVec // result
	raftApply   prometheus.Histogram
}

// newNodeMetrics registers n's series in reg.
func newNodeMetrics(reg prometheus.Registerer, n *Node) (*nodeMetrics, error) {
	m := &nodeMetrics{
		engine: newEngineMetrics(),
		enrollments: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fedge_coordinator_enrollments_total",
			Help: "Agent enrollments this node answered: ok (certificate issued) or refused (bad, used or expired token, bad CSR, ID taken).",
		}, []string{"result"}),
		raftApply: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "fedge_coordinator_raft_apply_duration_seconds", Buckets: applyBuckets,
			Help: "Time from submitting a command to Raft on this node to its result from the state machine (replication to a quorum, commit, apply).",
		}),
	}
	// Both results exist from the start, so a rate over them works at once.
	m.enrollments.WithLabelValues("ok")
	m.enrollments.WithLabelValues("refused")
	cs := append(m.engine.collectors(), m.enrollments, m.raftApply, raftCollector{n}, stateCollector{n},
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "fedge_coordinator_agents_connected",
			Help: "Agents with a control session on this node (only the leader holds them; followers redirect). Sessions for a sharded round's group work are fedge_coordinator_group_sessions.",
		}, func() float64 {
			n.agentsMu.Lock()
			defer n.agentsMu.Unlock()
			return float64(len(n.agents))
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "fedge_coordinator_group_sessions",
			Help: "Agent sessions open on this node, leader or follower, for the work of a sharded round's group it aggregates (the round's stages and uploads).",
		}, func() float64 { return float64(n.groupSessions.Load()) }))
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// enrolled counts one answered enrollment.
func (m *nodeMetrics) enrolled(ok bool) {
	if m == nil {
		return
	}
	if ok {
		m.enrollments.WithLabelValues("ok").Inc()
	} else {
		m.enrollments.WithLabelValues("refused").Inc()
	}
}

var (
	descRaftState       = prometheus.NewDesc("fedge_coordinator_raft_state", "1 for this node's Raft state (leader, follower, candidate, shutdown), 0 for the others.", []string{"state"}, nil)
	descRaftLeader      = prometheus.NewDesc("fedge_coordinator_raft_leader", "1 while this node leads the cluster.", nil, nil)
	descRaftTerm        = prometheus.NewDesc("fedge_coordinator_raft_term", "This node's current Raft term.", nil, nil)
	descRaftCommit      = prometheus.NewDesc("fedge_coordinator_raft_commit_index", "Index of the last log entry this node knows to be committed.", nil, nil)
	descRaftApplied     = prometheus.NewDesc("fedge_coordinator_raft_applied_index", "Index of the last log entry applied to this node's state machine.", nil, nil)
	descRaftLast        = prometheus.NewDesc("fedge_coordinator_raft_last_log_index", "Index of the last entry in this node's log.", nil, nil)
	descRaftLastContact = prometheus.NewDesc("fedge_coordinator_raft_last_contact_seconds", "Seconds since this follower last heard from the leader (0 on the leader; absent before the first contact).", nil, nil)
	descRaftVoters      = prometheus.NewDesc("fedge_coordinator_raft_voters", "Voters in the latest cluster configuration this node knows.", nil, nil)

	descRollouts      = prometheus.NewDesc("fedge_coordinator_rollouts", "Rollouts in the replicated state, by state (running, paused, promoted, rolled_back).", []string{"state"}, nil)
	descJobs          = prometheus.NewDesc("fedge_coordinator_jobs", "Training jobs in the replicated state, by state (running, stopped, done, failed).", []string{"state"}, nil)
	descAgentsEnroll  = prometheus.NewDesc("fedge_coordinator_agents_enrolled", "Enrolled agents that are not revoked, in the replicated state.", nil, nil)
	descStableVersion = prometheus.NewDesc("fedge_coordinator_stable_model_version", "The model version every agent outside a rollout serves (0: none).", nil, nil)
	descRoundsRunning = prometheus.NewDesc("fedge_coordinator_rounds_in_progress",
		"Rounds running in the replicated state, by the job they belong to (\"rollout/ID\" for a rollout's evaluation rounds, \"explain\" for explanation rounds); 0 for a running job between rounds.", []string{"job"}, nil)
)

// raftCollector reads the node's Raft replica at scrape time. It exports
// nothing while the node starts.
type raftCollector struct{ n *Node }

func (c raftCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRaftState, descRaftLeader, descRaftTerm, descRaftCommit, descRaftApplied, descRaftLast, descRaftLastContact, descRaftVoters} {
		ch <- d
	}
}

func (c raftCollector) Collect(ch chan<- prometheus.Metric) {
	if !c.n.ready.Load() {
		return
	}
	r := c.n.rep.raft
	state := r.State()
	for _, s := range []raft.RaftState{raft.Leader, raft.Follower, raft.Candidate, raft.Shutdown} {
		v := 0.0
		if s == state {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(descRaftState, prometheus.GaugeValue, v, stateLabel(s))
	}
	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	leader := 0.0
	if state == raft.Leader {
		leader = 1
	}
	gauge(descRaftLeader, leader)
	gauge(descRaftTerm, float64(r.CurrentTerm()))
	gauge(descRaftCommit, float64(r.CommitIndex()))
	gauge(descRaftApplied, float64(r.AppliedIndex()))
	gauge(descRaftLast, float64(r.LastIndex()))
	switch last := r.LastContact(); {
	case state == raft.Leader:
		gauge(descRaftLastContact, 0)
	case !last.IsZero():
		gauge(descRaftLastContact, time.Since(last).Seconds())
	}
	if f := r.GetConfiguration(); f.Error() == nil {
		voters := 0
		for _, s := range f.Configuration().Servers {
			if s.Suffrage == raft.Voter {
				voters++
			}
		}
		gauge(descRaftVoters, float64(voters))
	}
}

// stateLabel is a Raft state's label value.
func stateLabel(s raft.RaftState) string {
	switch s {
	case raft.Leader:
		return "leader"
	case raft.Follower:
		return "follower"
	case raft.Candidate:
		return "candidate"
	}
	return "shutdown"
}

// stateCollector summarizes the replicated state at scrape time: every
// node reports the same values once it has applied the same log.
type stateCollector struct{ n *Node }

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRollouts, descJobs, descAgentsEnroll, descStableVersion, descRoundsRunning} {
		ch <- d
	}
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	rollouts := map[string]int{RolloutRunning: 0, RolloutPaused: 0, RolloutPromoted: 0, RolloutRolledBack: 0}
	jobs := map[string]int{JobRunning: 0, JobStopped: 0, JobDone: 0, JobFailed: 0}
	var agents int
	var stable uint64
	var running map[string]int
	c.n.fsm.Read(func(s *State) {
		for _, r := range s.Rollouts {
			rollouts[r.State]++
		}
		for _, j := range s.Jobs {
			jobs[j.State]++
		}
		for _, a := range s.Agents {
			if !a.Revoked {
				agents++
			}
		}
		stable = s.Stable
		running = s.roundsRunningByOwner()
	})
	for owner, k := range running {
		ch <- prometheus.MustNewConstMetric(descRoundsRunning, prometheus.GaugeValue, float64(k), owner)
	}
	for st, k := range rollouts {
		ch <- prometheus.MustNewConstMetric(descRollouts, prometheus.GaugeValue, float64(k), st)
	}
	for st, k := range jobs {
		ch <- prometheus.MustNewConstMetric(descJobs, prometheus.GaugeValue, float64(k), st)
	}
	ch <- prometheus.MustNewConstMetric(descAgentsEnroll, prometheus.GaugeValue, float64(agents))
	ch <- prometheus.MustNewConstMetric(descStableVersion, prometheus.GaugeValue, float64(stable))
}
