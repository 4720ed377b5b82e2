package coordinator_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/fedge/fedge/coordinator"
	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/crypto/identity"
	"github.com/fedge/fedge/internal/testutil"
	"github.com/fedge/fedge/internal/wait"
	"github.com/fedge/fedge/protocol"
)

// processCluster is a cluster whose nodes run as child processes.
type processCluster struct {
	t     *testing.T
	dir   string
	peers []coordinator.Peer
	procs []*nodeProcess
}

func newProcessCluster(t *testing.T, n int, adm protocol.Admission) *processCluster {
	t.Helper()
	c := &processCluster{t: t, dir: t.TempDir(), procs: make([]*nodeProcess, n)}
	for i, a := range testutil.FreeUDPAddrs(t, n) {
		c.peers = append(c.peers, coordinator.Peer{ID: fmt.Sprintf("c%d", i+1), Addr: a})
	}
	if err := coordinator.InitCluster(rand.Reader, "test-cluster", c.peers, c.dir, time.Now()); err != nil {
		t.Fatal(err)
	}
	for i := range c.peers {
		c.start(i, adm)
	}
	return c
}

func (c *processCluster) start(i int, adm protocol.Admission) {
	c.procs[i] = startNodeProcess(c.t, coordinator.Config{
		NodeID: c.peers[i].ID, DataDir: filepath.Join(c.dir, c.peers[i].ID), Listen: c.peers[i].Addr,
		Peers: c.peers, Admission: adm,
	})
}

// admin returns an operator client for the given nodes (all if none).
func (c *processCluster) admin(nodes ...int) *api.Client {
	c.t.Helper()
	var addrs []string
	for i, p := range c.peers {
		if len(nodes) == 0 || contains(nodes, i) {
			addrs = append(addrs, p.Addr)
		}
	}
	a, err := api.Load(filepath.Join(c.dir, "admin"), addrs)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { a.Close() })
	return a
}

func contains(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// freshStatus asks the given nodes for their view on a new session (a
// client's session to a killed process would only time out).
func (c *processCluster) freshStatus(nodes ...int) (api.ClusterStatus, error) {
	a := c.admin(nodes...)
	defer a.Close()
	return status(a)
}

// status asks one node for its view, with a short deadline.
func status(a *api.Client) (api.ClusterStatus, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var st api.ClusterStatus
	err := a.Call(ctx, api.VerbClusterStatus, api.QueryOptions{}, nil, &st)
	return st, err
}

func createToken(ctx context.Context, a *api.Client) error {
	return a.Call(ctx, api.VerbTokensCreate, api.QueryOptions{}, api.TokenRequest{}, &api.TokenResponse{})
}

// TestFollowerRejoinsAfterKill9: a follower killed with SIGKILL (its QUIC
// connections vanish without a close) and restarted on the same address
// must be back in the configuration and caught up with the leader within
// 5 s. Before, the leader kept sending Raft traffic on its connection to
// the dead process until the 60 s idle timeout.
func TestFollowerRejoinsAfterKill9(t *testing.T) {
	c := newProcessCluster(t, 3, protocol.Admission{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var st api.ClusterStatus
	testutil.WaitFor(t, 15*time.Second, "a leader with the cluster CA", func() bool {
		var err error
		st, err = status(c.admin())
		return err == nil && st.LeaderID != "" && st.Cluster == "test-cluster"
	})
	leader, follower := -1, -1
	for i, p := range c.peers {
		if p.ID == st.LeaderID {
			leader = i
		} else if follower < 0 {
			follower = i
		}
	}
	lead := c.admin(leader)
	for i := 0; i < 5; i++ {
		if err := createToken(ctx, lead); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitFor(t, 15*time.Second, "the follower to apply the writes", func() bool {
		ls, err1 := status(lead)
		fs, err2 := c.freshStatus(follower)
		return err1 == nil && err2 == nil && fs.AppliedIndex >= ls.AppliedIndex
	})

	c.procs[follower].kill()
	// Writes the follower misses while it is down.
	for i := 0; i < 5; i++ {
		if err := createToken(ctx, lead); err != nil {
			t.Fatal(err)
		}
	}
	ls, err := status(lead)
	if err != nil {
		t.Fatal(err)
	}
	target := ls.AppliedIndex

	began := time.Now()
	c.start(follower, protocol.Admission{})
	// The goal is 5 s (make chaos measures it); the test allows 20 s, so a
	// loaded machine or the race detector does not fail it, and still fails
	// the 60 s it took before the fix.
	limit := 20 * time.Second
	var fs api.ClusterStatus
	if wait.Until(context.Background(), limit-time.Since(began), func() bool {
		fs, err = c.freshStatus(follower)
		return err == nil && fs.AppliedIndex >= target && fs.LeaderID == st.LeaderID && len(fs.Servers) == 3
	}) != nil {
		t.Fatalf("the restarted follower is not caught up %v after its restart: applied %d of %d, leader %q, %d servers (err %v)",
			limit, fs.AppliedIndex, target, fs.LeaderID, len(fs.Servers), err)
	}
	took := time.Since(began)
	if took > limit {
		t.Fatalf("the restarted follower caught up %v after its restart, want within %v", took.Round(10*time.Millisecond), limit)
	}
	// The leader reaches it again: a new write is applied there too.
	if err := createToken(ctx, lead); err != nil {
		t.Fatal(err)
	}
	ls, _ = status(lead)
	testutil.WaitFor(t, 15*time.Second, "the follower to apply a write made after its return", func() bool {
		fs, err := c.freshStatus(follower)
		return err == nil && fs.AppliedIndex >= ls.AppliedIndex
	})
	t.Logf("follower %s killed with SIGKILL, restarted, caught up to index %d in %v", c.peers[follower].ID, target, took.Round(10*time.Millisecond))
}

// TestEnrollFloodMemory floods a coordinator process with 1,000
// connections without a certificate, each announcing a 16 MiB enrollment
// Hello and trying to send it, and measures the node's resident memory
// meanwhile. Goal: it grows by less than 100 MB and comes back, and
// operators' writes keep committing. (60 such connections took a node
// from 138 MB to 763 MB before admission bounds and the enrollment frame
// limit.) The figures are logged; docs/BENCHMARKS.md records them.
func TestEnrollFloodMemory(t *testing.T) {
	const conns, frame = 1000, 16 << 20
	c := newProcessCluster(t, 1, protocol.Admission{})
	node := c.procs[0]
	adm := c.admin()
	testutil.WaitFor(t, 15*time.Second, "the node to lead", func() bool {
		st, err := status(adm)
		return err == nil && st.LeaderID == "c1" && st.Cluster == "test-cluster"
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := createToken(ctx, adm); err != nil {
		t.Fatal(err)
	}
	base := node.rss(t)

	caCert, err := identity.LoadPEMCert(filepath.Join(c.dir, "admin", coordinator.FileCACert))
	if err != nil {
		t.Fatal(err)
	}
	enrollTLS, err := identity.EnrollClientConfig(identity.Pin(caCert), protocol.ALPNEnroll)
	if err != nil {
		t.Fatal(err)
	}
	// The flood comes from another loopback address than the operator.
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("127.0.0.2")})
	if err != nil {
		t.Fatal(err)
	}
	tr := &quic.Transport{Conn: udp}
	defer udp.Close()
	defer tr.Close()
	target, err := net.ResolveUDPAddr("udp", c.peers[0].Addr)
	if err != nil {
		t.Fatal(err)
	}

	var peak atomic.Int64
	peak.Store(base)
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-tick.C:
			}
			if r := node.rss(t); r > peak.Load() {
				peak.Store(r)
			}
		}
	}()
	// Operators' writes while the flood runs.
	var writes, writeFails atomic.Int32
	var slowest atomic.Int64
	stopWrites := make(chan struct{})
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		for {
			select {
			case <-stopWrites:
				return
			case <-time.After(100 * time.Millisecond):
			}
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			began := time.Now()
			err := createToken(wctx, adm)
			cancel()
			if err != nil {
				writeFails.Add(1)
				t.Logf("write during the flood: %v", err)
				continue
			}
			writes.Add(1)
			if d := int64(time.Since(began)); d > slowest.Load() {
				slowest.Store(d)
			}
		}
	}()

	began := time.Now()
	var refused, dropped, cut atomic.Int32
	var sent atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, dialErr, err := floodEnroll(ctx, tr, target, enrollTLS, frame)
			sent.Add(n)
			var te *quic.TransportError
			switch {
			case errors.As(dialErr, &te) && te.ErrorCode == quic.ConnectionRefused:
				refused.Add(1)
			case dialErr != nil:
				// The node shed the handshake (its packets were dropped
				// under the load): as good as a refusal.
				dropped.Add(1)
			case err != nil:
				t.Errorf("flood connection: %v", err)
			default:
				cut.Add(1)
			}
		}()
	}
	wg.Wait()
	flood := time.Since(began)
	close(stopWrites)
	<-wrote
	close(stopSampling)
	<-sampled

	grew := peak.Load() - base
	t.Logf("%d connections in %v: %d refused, %d dropped in the handshake, %d cut off, %.1f MB sent in all; node RSS %.1f MB before, peak %.1f MB (+%.1f MB)",
		conns, flood.Round(time.Millisecond), refused.Load(), dropped.Load(), cut.Load(), float64(sent.Load())/1e6,
		float64(base)/1e6, float64(peak.Load())/1e6, float64(grew)/1e6)
	t.Logf("operators' writes during the flood: %d committed, %d failed, slowest %v",
		writes.Load(), writeFails.Load(), time.Duration(slowest.Load()).Round(time.Millisecond))
	if grew >= 100e6 {
		t.Errorf("the node's memory grew by %.1f MB under the flood, want < 100 MB", float64(grew)/1e6)
	}
	if writes.Load() == 0 || writeFails.Load() > 0 {
		t.Errorf("operators' writes under the flood: %d committed, %d failed", writes.Load(), writeFails.Load())
	}
	if err := createToken(ctx, adm); err != nil {
		t.Fatalf("a write after the flood: %v", err)
	}
	// The memory comes back (the Go runtime returns freed pages to the
	// system gradually; the race detector's shadow memory never goes).
	if raceEnabled {
		return
	}
	var now int64
	deadline := time.Now().Add(30 * time.Second)
	for now = node.rss(t); now > base+20e6 && time.Now().Before(deadline); now = node.rss(t) {
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("node RSS after the flood: %.1f MB", float64(now)/1e6)
	if now > base+20e6 {
		t.Errorf("the node's memory stays %.1f MB above its baseline after the flood", float64(now-base)/1e6)
	}
}

// floodEnroll dials the enrollment ALPN without a certificate, announces
// a Hello of frame bytes and writes until the node stops it. It returns
// the bytes the node took, the dial error if the connection was not
// established, and an error if the node took too much.
func floodEnroll(ctx context.Context, tr *quic.Transport, addr net.Addr, tc *tls.Config, frame int) (int64, error, error) {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := tr.Dial(dctx, addr, tc, &quic.Config{HandshakeIdleTimeout: 10 * time.Second})
	if err != nil {
		return 0, err, nil
	}
	defer conn.CloseWithError(0, "")
	str, err := conn.OpenStreamSync(dctx)
	if err != nil {
		return 0, nil, nil
	}
	_ = str.SetWriteDeadline(time.Now().Add(20 * time.Second))
	// A Hello request frame: type, flags, request ID, body length.
	hdr := []byte{byte(protocol.TypeHello), byte(protocol.FlagRequest), 1}
	for v := uint64(frame); ; v >>= 7 {
		if v < 0x80 {
			hdr = append(hdr, byte(v))
			break
		}
		hdr = append(hdr, byte(v)|0x80)
	}
	var sent int64
	n, err := str.Write(hdr)
	sent += int64(n)
	chunk := make([]byte, 64<<10)
	for err == nil && sent < int64(frame) {
		n, err = str.Write(chunk)
		sent += int64(n)
	}
	if err == nil {
		return sent, nil, fmt.Errorf("the node took the whole %d-byte frame", frame)
	}
	var nerr net.Error
	if errors.As(err, &nerr) && nerr.Timeout() {
		return sent, nil, fmt.Errorf("the node neither read nor closed after %d bytes", sent)
	}
	return sent, nil, nil
}

// TestClientLeavesKilledNode: an operator's client whose session is with a
// node that is then killed with SIGKILL (no close reaches the client) fails
// that call at its deadline, and its next call reaches another node at
// once, instead of waiting on the dead session until QUIC's idle timeout.
func TestClientLeavesKilledNode(t *testing.T) {
	c := newProcessCluster(t, 3, protocol.Admission{})
	a := c.admin()
	var st api.ClusterStatus
	testutil.WaitFor(t, 15*time.Second, "a leader", func() bool {
		var err error
		st, err = status(a)
		return err == nil && st.LeaderID != ""
	})
	victim := -1
	for i, p := range c.peers {
		if p.ID == st.Node {
			victim = i
		}
	}
	if victim < 0 {
		t.Fatalf("answering node %q is not a peer", st.Node)
	}
	c.procs[victim].kill()
	_, _ = status(a) // on the dead session: fails at its 2 s deadline
	began := time.Now()
	var got api.ClusterStatus
	var err error
	for time.Since(began) < 10*time.Second {
		if got, err = status(a); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("no answer from the live nodes within 10 s of the kill: %v", err)
	}
	if got.Node == st.Node {
		t.Fatalf("answered by the killed node %s", got.Node)
	}
	t.Logf("next call answered by %s %v after the failed one", got.Node, time.Since(began).Round(time.Millisecond))
}
