package coordinator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/fedge/fedge/protocol"
)

// Errors of the replication layer.
var (
	ErrNotLeader = errors.New("coordinator: not the leader")
	ErrNoLeader  = errors.New("coordinator: no leader elected")
)

// RaftTimings are the Raft timeouts. The zero value means raft's defaults
// (1 s heartbeat and election timeouts, 500 ms leader lease, 50 ms commit
// timeout), which suit hosts on a LAN; clusters whose nodes all run on one
// machine (tests, examples) use LoopbackRaftTimings.
type RaftTimings struct {
	Heartbeat, Election, LeaderLease, Commit time.Duration
}

// LoopbackRaftTimings suit a cluster whose nodes share one busy machine
// (an in-process test cluster, the examples). They are not faster than
// raft's defaults: elections take as long (the same 1 s heartbeat and
// election timeouts), and the leader lease is longer (800 ms instead of
// 500 ms), because a 2-core machine running a whole fleet starves shorter
// timeouts into needless elections. Only the commit timeout is shorter
// (10 ms instead of 50 ms), so that followers learn of commits sooner.
var LoopbackRaftTimings = RaftTimings{
	Heartbeat: time.Second, Election: time.Second,
	LeaderLease: 800 * time.Millisecond, Commit: 10 * time.Millisecond,
}

// LoadedHostRaftTimings suit coordinators on hosts whose CPU is shared
// with heavier work — other services' builds, a `fedge simulate` fleet on
// the same machine, rounds of thousands of agents — where a process may
// wait for the CPU for a second or more. Raft's LAN defaults then make a
// leader that stalls for 500 ms step down ("failed to contact quorum")
// and followers that miss one second of heartbeats start an election;
// every step-down closes the agents' sessions and aborts the round in
// flight. On a 2-core host at load average 11, an idle 3-node cluster
// with the defaults changed leader 7 times in a minute (docs/BENCHMARKS.md,
// "The 5,000-agent round"). These timings ride out stalls of up to 4 s:
// a leader steps down after 4 s without a quorum, a follower waits 5–10 s
// for a heartbeat. The cost is failover: after a real crash a new leader
// is elected in 5–15 s instead of 1–3 s. Safety does not depend on them.
var LoadedHostRaftTimings = RaftTimings{
	Heartbeat: 5 * time.Second, Election: 5 * time.Second,
	LeaderLease: 4 * time.Second, Commit: 10 * time.Millisecond,
}

// raftTimingsJSON is RaftTimings in a configuration file: Go durations
// ("5s"); absent fields are zero (raft's defaults).
type raftTimingsJSON struct {
	Heartbeat   protocol.Duration `json:"heartbeat,omitzero"`
	Election    protocol.Duration `json:"election,omitzero"`
	LeaderLease protocol.Duration `json:"leader_lease,omitzero"`
	Commit      protocol.Duration `json:"commit,omitzero"`
}

// MarshalJSON writes the timings as {"heartbeat": "5s", "election": "5s",
// "leader_lease": "4s", "commit": "10ms"}, leaving out zero fields.
func (t RaftTimings) MarshalJSON() ([]byte, error) {
	return json.Marshal(raftTimingsJSON{
		Heartbeat: protocol.Duration(t.Heartbeat), Election: protocol.Duration(t.Election),
		LeaderLease: protocol.Duration(t.LeaderLease), Commit: protocol.Duration(t.Commit),
	})
}

// UnmarshalJSON reads what MarshalJSON writes; unknown fields are an
// error, and so are negative durations.
func (t *RaftTimings) UnmarshalJSON(b []byte) error {
	var j raftTimingsJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return fmt.Errorf("coordinator.RaftTimings: %w", err)
	}
	if j.Heartbeat < 0 || j.Election < 0 || j.LeaderLease < 0 || j.Commit < 0 {
		return fmt.Errorf("coordinator.RaftTimings: negative duration in %s", b)
	}
	*t = RaftTimings{Heartbeat: time.Duration(j.Heartbeat), Election: time.Duration(j.Election),
		LeaderLease: time.Duration(j.LeaderLease), Commit: time.Duration(j.Commit)}
	return nil
}

// replica is the Raft half of a node: the log and stable stores in bbolt,
// file snapshots, and the transport on a StreamLayer.
type replica struct {
	raft      *raft.Raft
	fsm       *FSM
	store     *raftboltdb.BoltStore
	transport *raft.NetworkTransport
	id        string
	// applied, if set, sees how long each apply took.
	applied func(time.Duration)
	// log is raft's log sink; stopping quiets it.
	log *slogSink
}

// stopping tells raft's log that the node is shutting down: the transport
// errors of its own shutdown (streams and listeners it closes) are then
// expected, and logged at debug instead of error.
func (r *replica) stopping() { r.log.stopping.Store(true) }

// slogSink hands hclog's records (raft's) to slog with their own level,
// message and attributes, and the hclog logger's name as "logger". Once
// stopping is set, errors are logged at debug: a node shutting down closes
// the streams raft is reading, and says so once itself.
type slogSink struct {
	log      *slog.Logger
	stopping atomic.Bool
}

var _ hclog.SinkAdapter = (*slogSink)(nil)

// Accept implements hclog.SinkAdapter.
func (s *slogSink) Accept(name string, level hclog.Level, msg string, args ...any) {
	ctx := context.Background()
	l := slogLevel(level)
	if l >= slog.LevelWarn && s.stopping.Load() {
		l = slog.LevelDebug
	}
	if !s.log.Enabled(ctx, l) {
		return
	}
	attrs := make([]slog.Attr, 0, 1+len(args)/2)
	attrs = append(attrs, slog.String("logger", name))
	for i := 0; i+1 < len(args); i += 2 {
		attrs = append(attrs, slog.Any(fmt.Sprint(args[i]), args[i+1]))
	}
	if len(args)%2 == 1 {
		attrs = append(attrs, slog.Any("EXTRA_VALUE_AT_END", args[len(args)-1])) // hclog's name for it
	}
	s.log.LogAttrs(ctx, l, msg, attrs...)
}

// slogLevel maps an hclog level to slog's (trace is debug).
func slogLevel(l hclog.Level) slog.Level {
	switch {
	case l >= hclog.Error:
		return slog.LevelError
	case l == hclog.Warn:
		return slog.LevelWarn
	case l == hclog.Info:
		return slog.LevelInfo
	default:
		return slog.LevelDebug
	}
}

// newHCLogger returns an hclog.Logger for raft whose records go to log
// through slogSink; hclog's own output is discarded, so no line is
// formatted twice.
func newHCLogger(log *slog.Logger, name string) (hclog.Logger, *slogSink) {
	hl := hclog.NewInterceptLogger(&hclog.LoggerOptions{
		Name: name, Level: hclog.Off, Output: io.Discard,
	})
	sink := &slogSink{log: log}
	hl.RegisterSink(sink)
	return hl, sink
}

// openReplica opens (or creates) the Raft state in dir and starts Raft on
// the given stream layer. It does not bootstrap.
func openReplica(id, dir string, stream raft.StreamLayer, fsm *FSM, t RaftTimings, log *slog.Logger) (*replica, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("coordinator.openReplica: %w", err)
	}
	hl, sink := newHCLogger(log, "raft")
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")})
	if err != nil {
		return nil, fmt.Errorf("coordinator.openReplica: bolt store: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hl)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("coordinator.openReplica: snapshots: %w", err)
	}
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: stream, MaxPool: 3, Timeout: 10 * time.Second, Logger: hl,
	})
	conf := raft.DefaultConfig()
	conf.LocalID = raft.ServerID(id)
	conf.Logger = hl
	conf.SnapshotThreshold = 256
	conf.TrailingLogs = 512
	if t.Heartbeat > 0 {
		conf.HeartbeatTimeout = t.Heartbeat
	}
	if t.Election > 0 {
		conf.ElectionTimeout = t.Election
	}
	if t.LeaderLease > 0 {
		conf.LeaderLeaseTimeout = t.LeaderLease
	}
	if t.Commit > 0 {
		conf.CommitTimeout = t.Commit
	}
	// The leader replicates recent entries from memory: reading them back
	// from bbolt would decode each model blob again (msgpack copies a large
	// byte slice in 256 KiB steps). A few entries bound the memory held.
	logs, err := raft.NewLogCache(8, store)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("coordinator.openReplica: %w", err)
	}
	r, err := raft.NewRaft(conf, fsm, logs, store, snaps, trans)
	if err != nil {
		trans.Close()
		store.Close()
		return nil, fmt.Errorf("coordinator.openReplica: %w", err)
	}
	return &replica{raft: r, fsm: fsm, store: store, transport: trans, id: id, log: sink}, nil
}

// hasState reports whether the replica has ever been part of a cluster.
func (r *replica) hasState() bool {
	return r.raft.LastIndex() > 0
}

// bootstrap makes a new cluster of the given voters (id → address).
func (r *replica) bootstrap(voters map[string]string) error {
	var servers []raft.Server
	for _, id := range sortedKeys(voters) {
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: raft.ServerAddress(voters[id])})
	}
	if err := r.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		return fmt.Errorf("coordinator.bootstrap: %w", err)
	}
	return nil
}

// apply replicates one command and returns the FSM's result; the FSM's
// error, if any, is returned as the error.
func (r *replica) apply(ctx context.Context, t cmdType, hdr any, payload []byte) (any, error) {
	b, err := encodeEntry(t, hdr, payload)
	if err != nil {
		return nil, err
	}
	timeout := 30 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	began := time.Now()
	f := r.raft.Apply(b, timeout)
	err = f.Error()
	if r.applied != nil {
		r.applied(time.Since(began))
	}
	if err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return nil, fmt.Errorf("%w: %v", ErrNotLeader, err)
		}
		return nil, fmt.Errorf("coordinator.apply: %w", err)
	}
	if e, ok := f.Response().(error); ok {
		return nil, e
	}
	return f.Response(), nil
}

// isLeader reports whether this replica leads.
func (r *replica) isLeader() bool { return r.raft.State() == raft.Leader }

// leader returns the current leader's ID and address ("" if unknown).
func (r *replica) leader() (id, addr string) {
	a, i := r.raft.LeaderWithID()
	return string(i), string(a)
}

// removed reports whether this replica was a member of a cluster that has
// since removed it: its latest configuration has servers but not itself. A
// removed node never hears of a leader again, so it must not answer
// as though it were still part of the cluster. (A fresh node waiting to
// be added has an empty configuration and is not removed.)
func (r *replica) removed() bool {
	f := r.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	servers := f.Configuration().Servers
	for _, s := range servers {
		if string(s.ID) == r.id {
			return false
		}
	}
	return len(servers) > 0
}

// barrier waits until every entry committed before the call is applied
// here; on the leader that makes the next read linearizable.
func (r *replica) barrier(ctx context.Context) error {
	timeout := 10 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	if err := r.raft.VerifyLeader().Error(); err != nil {
		return fmt.Errorf("%w: %v", ErrNotLeader, err)
	}
	return r.raft.Barrier(timeout).Error()
}

func (r *replica) close() error {
	err := r.raft.Shutdown().Error()
	r.transport.Close()
	if cerr := r.store.Close(); err == nil {
		err = cerr
	}
	return err
}
