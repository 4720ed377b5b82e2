package coordinator_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/fedge/fedge/coordinator"
	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/crypto/identity"
	"github.com/fedge/fedge/internal/testutil"
	"github.com/fedge/fedge/protocol"
)

// TestNodeAnswersStartingUntilReady: a node serves its listener before
// its Raft replica exists (Raft needs the listener to open). Sessions that
// arrive meanwhile, from operators or from enrolling agents without a
// certificate, must get protocol.ErrStarting, not crash the node (a nil
// replica), and the admin client retries until the node is ready.
func TestNodeAnswersStartingUntilReady(t *testing.T) {
	dir := t.TempDir()
	addr := testutil.FreeUDPAddrs(t, 1)[0]
	peers := []coordinator.Peer{{ID: "c1", Addr: addr}}
	if err := coordinator.InitCluster(rand.Reader, "test-cluster", peers, dir, time.Now()); err != nil {
		t.Fatal(err)
	}
	// Hold the Raft log's file lock, so NewNode serves its listener and
	// waits to open its Raft state until the test lets go.
	raftDir := filepath.Join(dir, "c1", "raft")
	if err := os.MkdirAll(raftDir, 0o700); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(filepath.Join(raftDir, "raft.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	type started struct {
		n   *coordinator.Node
		err error
	}
	done := make(chan started, 1)
	go func() {
		n, err := coordinator.NewNode(coordinator.Config{
			NodeID: "c1", DataDir: filepath.Join(dir, "c1"), Listen: addr, Peers: peers,
			Raft: coordinator.LoopbackRaftTimings, Logger: testLogger(),
			// Room for the burst below: all of it comes from one address.
			Admission: protocol.Admission{MaxUnverified: 100, MaxUnverifiedPerSource: 100},
		})
		done <- started{n, err}
	}()
	var node *coordinator.Node
	t.Cleanup(func() {
		db.Close()
		if node == nil {
			if s := <-done; s.n != nil {
				s.n.Close()
			}
		} else {
			node.Close()
		}
	})

	caCert, err := identity.LoadPEMCert(filepath.Join(dir, "admin", coordinator.FileCACert))
	if err != nil {
		t.Fatal(err)
	}
	enrollTLS, err := identity.EnrollClientConfig(identity.Pin(caCert), protocol.ALPNEnroll)
	if err != nil {
		t.Fatal(err)
	}
	adminCert, _, err := identity.LoadKeyPair(filepath.Join(dir, "admin", "admin.pem"), filepath.Join(dir, "admin", "admin.key"), nil)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(caCert)
	adminTLS, err := identity.AdminConfig(adminCert, roots, protocol.ALPNAdmin)
	if err != nil {
		t.Fatal(err)
	}
	dial := func(tc *tls.Config, alpn string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := protocol.Dial(ctx, addr, tc, alpn, nil)
		if err == nil {
			s.Close()
		}
		return err
	}
	dialEnroll := func() error { return dial(enrollTLS, protocol.ALPNEnroll) }
	var lastErr error
	testutil.WaitFor(t, 15*time.Second, "the starting node's listener", func() bool {
		lastErr = dialEnroll()
		return errors.Is(lastErr, protocol.ErrStarting)
	})

	// A burst of operators and enrolling agents: every one is told to
	// retry, and the node lives through it.
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := 0; i < 20; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			errs <- dialEnroll()
		}()
		go func() {
			defer wg.Done()
			errs <- dial(adminTLS, protocol.ALPNAdmin)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, protocol.ErrStarting) {
			t.Fatalf("a session to a starting node: %v, want ErrStarting", err)
		}
	}

	adm := func() *api.Client {
		a, err := api.Load(filepath.Join(dir, "admin"), []string{addr})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close() })
		return a
	}
	// The admin client keeps asking until its deadline while the node
	// starts.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := adm().Call(ctx, api.VerbClusterStatus, api.QueryOptions{}, nil, nil); !errors.Is(err, protocol.ErrStarting) && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cluster status from a starting node: %v", err)
	}

	// An operator's call made now waits for the node to be ready.
	result := make(chan error, 1)
	var st api.ClusterStatus
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		result <- adm().Call(ctx, api.VerbClusterStatus, api.QueryOptions{}, nil, &st)
	}()
	db.Close()
	s := <-done
	if s.err != nil {
		t.Fatal(s.err)
	}
	node = s.n
	if err := <-result; err != nil {
		t.Fatalf("cluster status once ready: %v", err)
	}
	if st.Node != "c1" {
		t.Fatalf("status %+v", st)
	}
}
