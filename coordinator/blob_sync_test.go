package coordinator

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/internal/testutil"
	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/tensor"
)

// nodeCluster is n real nodes (QUIC, Raft, bbolt) on loopback.
type nodeCluster struct {
	dir   string
	cfgs  []Config
	nodes []*Node
}

func startNodes(tb testing.TB, n int) *nodeCluster {
	tb.Helper()
	c := &nodeCluster{dir: tb.TempDir()}
	addrs := testutil.FreeUDPAddrs(tb, n)
	var peers []Peer
	for i, a := range addrs {
		peers = append(peers, Peer{ID: fmt.Sprintf("c%d", i+1), Addr: a})
	}
	if err := InitCluster(rand.Reader, "blobs", peers, c.dir, time.Now()); err != nil {
		tb.Fatal(err)
	}
	for _, p := range peers {
		c.cfgs = append(c.cfgs, Config{NodeID: p.ID, DataDir: filepath.Join(c.dir, p.ID), Listen: p.Addr, Peers: peers, Raft: LoopbackRaftTimings, Logger: discardLogger()})
	}
	c.nodes = make([]*Node, n)
	for i := range c.cfgs {
		c.start(tb, i)
	}
	tb.Cleanup(func() {
		for _, nd := range c.nodes {
			if nd != nil {
				nd.Close()
			}
		}
	})
	return c
}

func (c *nodeCluster) start(tb testing.TB, i int) {
	tb.Helper()
	nd, err := NewNode(c.cfgs[i])
	if err != nil {
		tb.Fatal(err)
	}
	c.nodes[i] = nd
}

func (c *nodeCluster) stop(i int) {
	c.nodes[i].Close()
	c.nodes[i] = nil
}

func (c *nodeCluster) leader(tb testing.TB) (int, *Node) {
	tb.Helper()
	li := -1
	testutil.WaitFor(tb, 30*time.Second, "a leader", func() bool {
		for i, nd := range c.nodes {
			if nd != nil && nd.IsLeader() {
				li = i
				return true
			}
		}
		return false
	})
	return li, c.nodes[li]
}

// testModelFile is the file of an external model of n parameters whose
// values depend on seed.
func testModelFile(tb testing.TB, n int, seed float32) []byte {
	tb.Helper()
	spec, err := tensor.ExternalSpec("blobtest", []tensor.ExternalTensor{{Name: "w", Shape: []int{n}}})
	if err != nil {
		tb.Fatal(err)
	}
	p := make([]float32, n)
	for i := range p {
		p[i] = seed + float32(i%1000)
	}
	m, err := tensor.NewExternalModel(spec, p)
	if err != nil {
		tb.Fatal(err)
	}
	b, err := m.MarshalBinary()
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func importCmd(file []byte) modelImportCmd {
	sum := sha256.Sum256(file) // any distinct name will do for the registry
	return modelImportCmd{Model: ModelRecord{Hash: hex.EncodeToString(sum[:]), CreatedAt: time.Now(), Name: "blobtest", External: true}}
}

// exportFrom downloads version's model file from the node at addr, as an
// operator's client (or an agent) does.
func exportFrom(tb testing.TB, c *nodeCluster, addr string, version uint64) ([]byte, error) {
	tb.Helper()
	a, err := api.Load(filepath.Join(c.dir, "admin"), []string{addr})
	if err != nil {
		tb.Fatal(err)
	}
	defer a.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var buf protocol.MemBlob
	err = a.ExportModel(ctx, version, &buf)
	return buf.Bytes(), err
}

// TestFollowerFetchesMissingBlob: a follower that was down while a
// version committed applies the entry without its bytes, fetches the
// blob from a peer and serves it; a node that lost a blob fetches it
// again when asked for it.
func TestFollowerFetchesMissingBlob(t *testing.T) {
	c := startNodes(t, 3)
	li, leader := c.leader(t)
	fi := (li + 1) % 3
	c.stop(fi)
	file := testModelFile(t, 300_000, 1) // 1.2 MB: two chunks and a bit
	ctx := context.Background()
	res, err := leader.apply(ctx, cmdModelImport, importCmd(file), file)
	if err != nil {
		t.Fatal(err)
	}
	v := res.(uint64)
	var rec ModelRecord
	leader.FSM().Read(func(s *State) { rec = *s.Models[v] })
	c.start(t, fi)
	f := c.nodes[fi]
	testutil.WaitFor(t, 30*time.Second, "the follower to apply the version", func() bool {
		ok := false
		f.FSM().Read(func(s *State) { _, ok = s.Models[v] })
		return ok
	})
	got, err := exportFrom(t, c, f.Addr(), v)
	if err != nil || !bytes.Equal(got, file) {
		t.Fatalf("the follower served %d bytes (%v), want the %d-byte model", len(got), err, len(file))
	}
	if !f.FSM().Blobs().Has(rec.BlobHash) {
		t.Fatal("the follower served the version without holding its blob")
	}
	// A blob lost from the store is fetched again before it is served.
	if err := f.FSM().Blobs().Remove(rec.BlobHash); err != nil {
		t.Fatal(err)
	}
	got, err = exportFrom(t, c, f.Addr(), v)
	if err != nil || !bytes.Equal(got, file) {
		t.Fatalf("after losing the blob the follower served %d bytes (%v)", len(got), err)
	}
}

// TestLeaderChangeBetweenBlobAndCommit: a leader that stored and
// replicated a version's blob but lost leadership before the entry
// committed commits nothing; the new leader commits the next version, and
// every node then serves exactly the committed bytes, whole (the orphan
// blob is named by no version).
func TestLeaderChangeBetweenBlobAndCommit(t *testing.T) {
	c := startNodes(t, 3)
	li, old := c.leader(t)
	ctx := context.Background()
	orphan := testModelFile(t, 300_000, 7)
	hdr, err := old.blobsync.stage(ctx, importCmd(orphan), orphan)
	if err != nil {
		t.Fatal(err)
	}
	if err := old.rep.raft.LeadershipTransfer().Error(); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "another leader", func() bool {
		for i, nd := range c.nodes {
			if i != li && nd.IsLeader() {
				return true
			}
		}
		return false
	})
	if _, err := old.rep.apply(ctx, cmdModelImport, hdr, nil); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("the old leader's proposal: %v, want ErrNotLeader", err)
	}
	_, leader := c.leader(t)
	file := testModelFile(t, 300_000, 8)
	res, err := leader.apply(ctx, cmdModelImport, importCmd(file), file)
	if err != nil {
		t.Fatal(err)
	}
	v := res.(uint64)
	orphanSum := sha256.Sum256(orphan)
	for _, nd := range c.nodes {
		testutil.WaitFor(t, 30*time.Second, "node "+nd.ID()+" to hold the version", func() bool {
			var n int
			var hash string
			nd.FSM().Read(func(s *State) {
				n = len(s.Models)
				if m, ok := s.Models[v]; ok {
					hash = m.BlobHash
				}
			})
			if n > 1 || hash == hex.EncodeToString(orphanSum[:]) {
				t.Fatalf("node %s: %d versions, version %d names blob %s (the orphan is %x)", nd.ID(), n, v, hash, orphanSum)
			}
			return hash != "" && nd.FSM().Blobs().Has(hash)
		})
		got, err := exportFrom(t, c, nd.Addr(), v)
		if err != nil || !bytes.Equal(got, file) {
			t.Fatalf("node %s served %d bytes (%v)", nd.ID(), len(got), err)
		}
		// Whatever a node holds under a blob's name is that content, whole.
		hs, _ := nd.FSM().Blobs().Hashes()
		for _, h := range hs {
			r, err := nd.FSM().Blobs().Open(h)
			if err != nil {
				t.Fatal(err)
			}
			b := make([]byte, r.Size())
			r.ReadAt(b, 0)
			r.Close()
			if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != h {
				t.Fatalf("node %s holds a blob %s whose content hashes to %x", nd.ID(), h, sum)
			}
		}
	}
}
