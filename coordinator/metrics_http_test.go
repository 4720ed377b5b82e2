package coordinator_test

import (
	"crypto/rand"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedge/fedge/coordinator"
	"github.com/fedge/fedge/internal/testutil"
)

// get returns the status and body of an HTTP GET.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestReadyzNeedsALeader: a node of a two-voter cluster whose peer is
// down is alive (/healthz 200) but not ready (/readyz 503, saying there
// is no leader) and reports itself a non-leader in /metrics; once the
// peer starts and a leader is elected, /readyz answers 200.
func TestReadyzNeedsALeader(t *testing.T) {
	dir := t.TempDir()
	addrs := testutil.FreeUDPAddrs(t, 2)
	peers := []coordinator.Peer{{ID: "c1", Addr: addrs[0]}, {ID: "c2", Addr: addrs[1]}}
	if err := coordinator.InitCluster(rand.Reader, "test-cluster", peers, dir, time.Now()); err != nil {
		t.Fatal(err)
	}
	start := func(i int, metrics string) *coordinator.Node {
		n, err := coordinator.NewNode(coordinator.Config{
			NodeID: peers[i].ID, DataDir: filepath.Join(dir, peers[i].ID), Listen: addrs[i], Peers: peers,
			Raft: coordinator.LoopbackRaftTimings, Logger: testLogger(), MetricsListen: metrics,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		return n
	}
	n1 := start(0, "127.0.0.1:0")
	base := "http://" + n1.MetricsAddr()
	if code, body := get(t, base+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	// One voter of two cannot elect a leader: not ready, and says why.
	code, body := get(t, base+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "no leader") {
		t.Fatalf("/readyz without a leader: %d %q", code, body)
	}
	m := testutil.Scrape(t, base+"/metrics")
	if v, ok := m.Value("fedge_coordinator_raft_leader"); !ok || v != 0 {
		t.Fatalf("fedge_coordinator_raft_leader %v (present %v) without a quorum", v, ok)
	}
	if v, _ := m.Value("fedge_coordinator_raft_state", "state", "leader"); v != 0 {
		t.Fatal("raft_state says leader without a quorum")
	}
	if v, _ := m.Value("fedge_coordinator_raft_voters"); v != 2 {
		t.Fatalf("fedge_coordinator_raft_voters %v, want 2", v)
	}

	n2 := start(1, "")
	if n2.MetricsAddr() != "" {
		t.Fatalf("metrics served at %q without metrics_listen", n2.MetricsAddr())
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body = get(t, base+"/readyz")
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d %q 30 s after the peer started", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	id, _ := n1.Leader()
	if !strings.Contains(body, "leader "+id) {
		t.Fatalf("/readyz body %q does not name the leader %s", body, id)
	}
	m = testutil.Scrape(t, base+"/metrics")
	leader := 0.0
	if n1.IsLeader() {
		leader = 1
	}
	if v, _ := m.Value("fedge_coordinator_raft_leader"); v != leader {
		t.Fatalf("fedge_coordinator_raft_leader %v, node leads: %v", v, n1.IsLeader())
	}
	if v, _ := m.Value("fedge_coordinator_raft_term"); v < 1 {
		t.Fatalf("fedge_coordinator_raft_term %v after an election", v)
	}
	// A follower learns the new leader's first commit with its next
	// append: the index moves once the leader's entry is replicated.
	var commit float64
	testutil.WaitFor(t, 10*time.Second, "the commit index to reach the elected leader's first entry", func() bool {
		commit, _ = testutil.Scrape(t, base+"/metrics").Value("fedge_coordinator_raft_commit_index")
		return commit >= 1
	})
}
