package coordinator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedge/fedge/coordinator/console"
	"github.com/fedge/fedge/crypto/identity"
	"github.com/fedge/fedge/internal/telemetry"
	"github.com/fedge/fedge/protocol"
)

// Config is a coordinator node's configuration. Zero values of optional
// fields mean the documented defaults.
type Config struct {
	// NodeID is this node's Raft ID; it must match its certificate.
	NodeID string `json:"node_id"`
	// DataDir holds raft/ (log, stable store, snapshots) and tls/ (the
	// credentials InitCluster wrote).
	DataDir string `json:"data_dir"`
	// Listen is the UDP address of the QUIC listener (agents, admin and
	// Raft share it).
	Listen string `json:"listen"`
	// Advertise is the address other nodes and agents dial; default Listen.
	Advertise string `json:"advertise,omitempty"`
	// Peers are the initial voters, this node included. A node with no
	// Raft state bootstraps the cluster from them (every initial voter must
	// get the same list); later starts ignore it.
	Peers []Peer `json:"peers,omitempty"`
	// HeartbeatInterval is how often agents report; default 5 s.
	HeartbeatInterval time.Duration `json:"-"`
	// Raft timings; zero fields mean raft's defaults (for hosts on a LAN).
	// In a configuration file: "raft": {"heartbeat": "5s", "election":
	// "5s", "leader_lease": "4s"} (LoadedHostRaftTimings, for hosts whose
	// CPU is shared with heavier work).
	Raft RaftTimings `json:"raft,omitzero"`
	// Engine tunes the round engine.
	Engine EngineConfig `json:"-"`
	// Transport tunes QUIC; nil means defaults.
	Transport *protocol.Config `json:"-"`
	// Admission bounds what clients without a certificate (enrolling
	// agents, and every client until its handshake is done) may hold: in
	// total, per source address, and the frame size on the enrollment
	// ALPN. Zero fields mean protocol's defaults (64 connections, 16 per
	// source, 8 KiB frames); non-zero fields override Transport's.
	Admission protocol.Admission `json:"admission,omitempty"`
	// MetricsListen is the TCP host:port of the node's HTTP server of
	// /metrics (Prometheus), /healthz (alive) and /readyz (a voter of a
	// cluster with a known leader; 503 with the reason otherwise). Empty
	// (the default) serves none of them. Port 0 picks a free port
	// (MetricsAddr).
	MetricsListen string `json:"metrics_listen,omitempty"`
	// Metrics is the Prometheus registry the node's series join. Nil
	// means a registry of the node's own, with the Go, process and
	// fedge_build_info series (telemetry.NewRegistry).
	Metrics *prometheus.Registry `json:"-"`
	// Logger receives the node's logs; nil discards them.
	Logger *slog.Logger `json:"-"`
	// MaxImportBytes bounds the model file an operator may import
	// (Models().Import): the leader holds one import at a time in memory
	// while it checks it, then stores it as a blob beside the Raft log
	// like every committed version. If zero, DefaultMaxImportBytes.
	MaxImportBytes int64 `json:"max_import_bytes,omitempty"`
	// MaxConcurrentRounds bounds the rounds the leader runs at once: each
	// running job, running rollout and the explanation queue runs one
	// round at a time, and their rounds overlap up to this bound (the
	// rest wait their turn, first come first served). If zero,
	// DefaultMaxConcurrentRounds (4); 1 runs one round at a time
	// cluster-wide.
	MaxConcurrentRounds int `json:"max_concurrent_rounds,omitempty"`
	// SecurityConfig: where the seal key comes from, token TTL bound (pki.go).
	SecurityConfig
	// UIConfig: where and how the node serves the web console (node_console.go).
	UIConfig
}

// DefaultMaxImportBytes is the default of Config.MaxImportBytes: 256 MiB,
// a model of 64M float32 parameters.
const DefaultMaxImportBytes = 256 << 20

// Validate checks the configuration.
func (c *Config) Validate() error {
	switch {
	case c.NodeID == "":
		return errors.New("coordinator.Config: node_id is required")
	case c.DataDir == "":
		return errors.New("coordinator.Config: data_dir is required")
	case c.Listen == "":
		return errors.New("coordinator.Config: listen is required")
	case c.MaxImportBytes < 0:
		return errors.New("coordinator.Config: max_import_bytes must not be negative")
	case c.MaxConcurrentRounds < 0:
		return errors.New("coordinator.Config: max_concurrent_rounds must not be negative")
	}
	return identity.ValidateID(c.NodeID)
}

// Node is one coordinator: a Raft replica of the fleet's state, the QUIC
// listener agents, operators and peers connect to, and, while it leads,
// the round engine.
type Node struct {
	cfg   Config
	log   *slog.Logger
	creds *credentials
	ln    *protocol.Listener
	rep   *replica
	reg   *prometheus.Registry
	met   *nodeMetrics

	metricsLn  net.Listener // nil when Config.MetricsListen is empty
	metricsSrv *http.Server
	console    *console.Server // nil when Config.UIListen is empty
	fsm        *FSM
	eng        *Engine

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// ready is set once rep and eng exist: the listener serves (Raft
	// needs it to open) before then, and handlers answer
	// protocol.ErrStarting meanwhile.
	ready atomic.Bool

	caMu sync.Mutex
	ca   *identity.CA // opened lazily from the replicated sealed CA

	agentsMu sync.Mutex
	agents   map[string]*agentConn
	// groupSessions counts the open agent sessions that carry a sharded
	// round's group work on this node (round_group_peer.go).
	groupSessions atomic.Int64

	imports   chan struct{}        // one model import at a time (node_import.go)
	blobsync  *blobSync            // model blobs between coordinators (blob_sync.go)
	downloads downloads            // encoded model deltas for agents
	peers     peers                // session to the leader for forwarded writes
	seen      map[string]time.Time // last-seen times not yet replicated
}

// NewNode starts a coordinator node: it opens the Raft state in DataDir,
// listens on Listen, and bootstraps the cluster when it is new. Close
// stops it.
func NewNode(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Advertise == "" {
		cfg.Advertise = cfg.Listen
	}
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = 5 * time.Second
	}
	if cfg.MaxImportBytes == 0 {
		cfg.MaxImportBytes = DefaultMaxImportBytes
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("node", cfg.NodeID)
	creds, err := loadCredentials(filepath.Join(cfg.DataDir, "tls"), cfg.SecurityConfig)
	if err != nil {
		return nil, err
	}
	if creds.nodeID != cfg.NodeID {
		return nil, fmt.Errorf("coordinator.NewNode: certificate is for node %q, config says %q", creds.nodeID, cfg.NodeID)
	}
	blobs, err := OpenFileBlobs(filepath.Join(cfg.DataDir, "blobs"))
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: log, creds: creds, fsm: NewFSMWithBlobs(log, blobs), agents: map[string]*agentConn{}, seen: map[string]time.Time{}, imports: make(chan struct{}, 1)}
	n.blobsync = newBlobSync(n)
	// Spooled deltas do not outlive the node: a crash's are removed here.
	n.downloads.dir = filepath.Join(cfg.DataDir, "deltas")
	if err := os.RemoveAll(n.downloads.dir); err != nil {
		return nil, fmt.Errorf("coordinator.NewNode: %w", err)
	}
	if err := os.MkdirAll(n.downloads.dir, 0o700); err != nil {
		return nil, fmt.Errorf("coordinator.NewNode: %w", err)
	}
	n.fsm.missing = n.blobsync.missing
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.reg = cfg.Metrics
	if n.reg == nil {
		n.reg = telemetry.NewRegistry()
	}
	if n.met, err = newNodeMetrics(n.reg, n); err != nil {
		return nil, fmt.Errorf("coordinator.NewNode: metrics: %w", err)
	}

	serverTLS, err := identity.ServerConfig(identity.ServerOptions{
		Certificate: &creds.cert, ClientCAs: creds.roots, Revoker: identity.RevokerFunc(n.revoked),
	})
	if err != nil {
		return nil, fmt.Errorf("coordinator.NewNode: %w", err)
	}
	tcfg := &protocol.Config{}
	if cfg.Transport != nil {
		c := *cfg.Transport
		tcfg = &c
	}
	tcfg.Logger = log
	if a := cfg.Admission; a.MaxUnverified > 0 {
		tcfg.Admission.MaxUnverified = a.MaxUnverified
	}
	if a := cfg.Admission; a.MaxUnverifiedPerSource > 0 {
		tcfg.Admission.MaxUnverifiedPerSource = a.MaxUnverifiedPerSource
	}
	if a := cfg.Admission; a.EnrollMaxFrame > 0 {
		tcfg.Admission.EnrollMaxFrame = a.EnrollMaxFrame
	}
	n.ln, err = protocol.Listen(cfg.Listen, serverTLS, tcfg)
	if err != nil {
		return nil, fmt.Errorf("coordinator.NewNode: %w", err)
	}
	fail := func(err error) (*Node, error) {
		n.cancel()
		if n.metricsSrv != nil {
			n.metricsSrv.Close()
		}
		if n.console != nil {
			n.console.Close()
		}
		if n.rep != nil {
			n.rep.close()
		}
		n.ln.Close()
		return nil, err
	}
	if cfg.MetricsListen != "" {
		if err := n.startMetrics(cfg.MetricsListen); err != nil {
			return fail(err)
		}
	}
	if cfg.UIListen != "" {
		if err := n.startConsole(); err != nil {
			return fail(err)
		}
	}
	if cfg.Listen != cfg.Advertise || isPortZero(cfg.Listen) {
		n.cfg.Advertise = advertiseFor(cfg.Advertise, n.ln.Addr().String())
	}
	peerTLS, err := identity.CoordinatorClientConfig(creds.cert, creds.roots, identity.RevokerFunc(n.revoked), protocol.ALPNRaft)
	if err != nil {
		return fail(err)
	}
	stream, err := newQUICStreamLayer(n.ln, peerTLS, n.cfg.Advertise)
	if err != nil {
		return fail(err)
	}
	for alpn, h := range map[string]protocol.Handler{
		protocol.ALPNAgent:  agentHandler{n},
		protocol.ALPNEnroll: enrollHandler{n},
		protocol.ALPNAdmin:  adminHandler{n},
		protocol.ALPNPeer:   peerHandler{n},
	} {
		if err := n.ln.Handle(alpn, h); err != nil {
			return fail(err)
		}
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.ln.Serve(n.ctx); err != nil && n.ctx.Err() == nil {
			log.Error("listener stopped", "err", err)
		}
	}()
	n.rep, err = openReplica(cfg.NodeID, filepath.Join(cfg.DataDir, "raft"), stream, n.fsm, cfg.Raft, log)
	if err != nil {
		return fail(err)
	}
	n.rep.applied = func(d time.Duration) { n.met.raftApply.Observe(d.Seconds()) }
	if !n.rep.hasState() && len(cfg.Peers) > 0 {
		voters := map[string]string{}
		for _, p := range cfg.Peers {
			voters[p.ID] = p.Addr
		}
		if _, ok := voters[cfg.NodeID]; !ok {
			return fail(fmt.Errorf("coordinator.NewNode: peers do not include this node %q", cfg.NodeID))
		}
		voters[cfg.NodeID] = n.cfg.Advertise
		if err := n.rep.bootstrap(voters); err != nil {
			return fail(err)
		}
	}
	ecfg := cfg.Engine
	if ecfg.MaxRounds == 0 {
		ecfg.MaxRounds = cfg.MaxConcurrentRounds
	}
	n.eng = newEngine(log, ecfg, n.fsm, n, n.links, n.met.engine)
	n.eng.peers = n // sharded rounds reach the other coordinators (round_group_peer.go)
	n.ready.Store(true)
	n.wg.Add(3)
	go n.leadership()
	go n.flushSeen()
	go func() {
		defer n.wg.Done()
		n.blobsync.run(n.ctx)
	}()
	return n, nil
}

// isPortZero reports whether addr is a host:port whose port asks the
// kernel for one ("0", "00", …).
func isPortZero(addr string) bool {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	p, err := strconv.Atoi(port)
	return err == nil && p == 0
}

// advertiseFor fills a zero port of adv with the port of the bound address.
func advertiseFor(adv, bound string) string {
	if !isPortZero(adv) {
		return adv
	}
	host, _, _ := net.SplitHostPort(adv)
	_, port, err := net.SplitHostPort(bound)
	if err != nil {
		return adv
	}
	return net.JoinHostPort(host, port)
}

// Addr is the address agents, operators and peers dial.
func (n *Node) Addr() string { return n.cfg.Advertise }

// ID is the node's Raft ID.
func (n *Node) ID() string { return n.cfg.NodeID }

// FSM exposes the replicated state for reads (tests, admin).
func (n *Node) FSM() *FSM { return n.fsm }

// IsLeader reports whether this node leads the cluster.
func (n *Node) IsLeader() bool { return n.rep.isLeader() }

// Leader returns the leader's ID and address, empty if unknown.
func (n *Node) Leader() (id, addr string) { return n.rep.leader() }

// Close stops the node: the engine, the listener and Raft.
func (n *Node) Close() error {
	if n.rep != nil {
		n.rep.stopping()
	}
	n.cancel()
	if n.metricsSrv != nil {
		n.metricsSrv.Close()
	}
	if n.console != nil {
		n.console.Close()
	}
	n.dropAgents()
	n.peers.close()
	n.blobsync.close()
	// The listener closes before Raft stops: Raft's shutdown waits for its
	// replication goroutines, and one blocked in an RPC to a peer that
	// vanished (kill -9, a partition) would hold it for the transport's
	// whole timeout. Closing the QUIC connections fails that RPC at once.
	n.ln.Close()
	err := n.rep.close()
	n.wg.Wait()
	n.downloads.close()
	return err
}

// apply implements replicator. A model version's bytes (the payload of
// cmdModelCommit and cmdModelImport) never enter the log: they become a
// blob in this node's store, pushed to a majority of the voters, and the
// entry names it.
func (n *Node) apply(ctx context.Context, t cmdType, hdr any, payload []byte) (any, error) {
	if (t == cmdModelCommit || t == cmdModelImport) && len(payload) > 0 {
		if !n.rep.isLeader() {
			return nil, ErrNotLeader
		}
		var err error
		hdr, err = n.blobsync.stage(ctx, hdr, payload)
		if h := heldBlob(hdr); h != "" {
			defer n.blobsync.unhold(h)
		}
		if err != nil {
			return nil, err
		}
		payload = nil
	}
	return n.rep.apply(ctx, t, hdr, payload)
}

// term implements replicator.
func (n *Node) term() uint64 { return n.rep.raft.CurrentTerm() }

// nodeID implements replicator.
func (n *Node) nodeID() string { return n.cfg.NodeID }

// revoked is the TLS layer's revocation check, backed by the FSM.
func (n *Node) revoked(serial *big.Int, id identity.Identity) bool {
	hexSerial := serial.Text(16)
	rev := false
	n.fsm.Read(func(s *State) {
		if _, ok := s.Revoked[hexSerial]; ok {
			rev = true
			return
		}
		if id.Role == identity.RoleAgent {
			if a, ok := s.Agents[id.ID]; ok && a.Revoked {
				rev = true
			}
		}
	})
	return rev
}

// leadership runs the engine while this node leads and makes sure a new
// cluster has its CA in the replicated state.
func (n *Node) leadership() {
	defer n.wg.Done()
	var stop context.CancelFunc
	var done chan struct{}
	stopEngine := func() {
		if stop != nil {
			stop()
			<-done
			stop = nil
		}
	}
	defer stopEngine()
	ch := n.rep.raft.LeaderCh()
	// LeaderCh only reports changes; a node may already lead.
	lead := n.rep.isLeader()
	for {
		if lead && stop == nil {
			ctx, cancel := context.WithCancel(n.ctx)
			stop, done = cancel, make(chan struct{})
			go func() {
				defer close(done)
				if err := n.ensureBootstrapped(ctx); err != nil {
					n.log.Error("bootstrap state", "err", err)
				}
				n.log.Info("leading: round engine started")
				n.eng.run(ctx)
			}()
		} else if !lead {
			stopEngine()
			n.dropAgents()
		}
		select {
		case <-n.ctx.Done():
			return
		case lead = <-ch:
		}
	}
}

// dropAgents closes every agent session: a node that stops leading must
// send its agents to the new leader, which runs the rounds. They reconnect
// and are redirected.
func (n *Node) dropAgents() {
	n.agentsMu.Lock()
	conns := make([]*agentConn, 0, len(n.agents))
	for _, a := range n.agents {
		conns = append(conns, a)
	}
	n.agentsMu.Unlock()
	for _, a := range conns {
		a.sess.Close()
	}
	if len(conns) > 0 {
		n.log.Info("no longer leading: sent agents to the new leader", "agents", len(conns))
	}
}

// ensureBootstrapped writes the cluster's sealed CA into a new cluster's
// replicated state.
func (n *Node) ensureBootstrapped(ctx context.Context) error {
	var has bool
	n.fsm.Read(func(s *State) { has = len(s.CA) > 0 })
	if has {
		return nil
	}
	if n.creds.sealed == nil {
		return errors.New("this node has no ca.sealed to bootstrap the cluster with")
	}
	if err := n.rep.barrier(ctx); err != nil {
		return err
	}
	n.fsm.Read(func(s *State) { has = len(s.CA) > 0 })
	if has {
		return nil
	}
	ca, err := n.creds.openCA(n.creds.sealed)
	if err != nil {
		return fmt.Errorf("opening ca.sealed: %w", err)
	}
	_, err = n.rep.apply(ctx, cmdBootstrap, bootstrapCmd{ClusterName: ca.ClusterName(), CA: n.creds.sealed, Admins: n.creds.admins}, nil)
	if errors.Is(err, ErrExists) {
		return nil
	}
	return err
}

// openCA returns the cluster CA, opened from the replicated sealed copy
// with this node's seal key.
func (n *Node) openCA() (*identity.CA, error) {
	n.caMu.Lock()
	defer n.caMu.Unlock()
	if n.ca != nil {
		return n.ca, nil
	}
	var sealed []byte
	n.fsm.Read(func(s *State) { sealed = s.CA })
	if sealed == nil {
		sealed = n.creds.sealed
	}
	ca, err := n.creds.openCA(sealed)
	if err != nil {
		return nil, err
	}
	n.ca = ca
	return ca, nil
}

// flushSeen replicates agents' last-seen times once a minute (coarse on
// purpose: heartbeats must not flood the log).
func (n *Node) flushSeen() {
	defer n.wg.Done()
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		if !n.rep.isLeader() {
			continue
		}
		n.agentsMu.Lock()
		seen := n.seen
		n.seen = map[string]time.Time{}
		n.agentsMu.Unlock()
		if len(seen) == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
		if _, err := n.rep.apply(ctx, cmdAgentSeen, seenCmd{Seen: seen}, nil); err != nil {
			n.log.Debug("last seen", "err", err)
		}
		cancel()
	}
}

// checkReady refuses a session while the node starts: the listener serves
// before the Raft replica and the engine exist.
func (n *Node) checkReady() error {
	if !n.ready.Load() {
		return protocol.ErrStarting
	}
	return nil
}

// redirect is the answer of a follower to a request only the leader serves.
func (n *Node) redirect() error {
	id, addr := n.rep.leader()
	return &protocol.Redirect{Addr: addr, NodeID: id}
}
