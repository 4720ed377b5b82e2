package coordinator

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/fedge/fedge/internal/testutil"
)

// tcpLayer is a plain-TCP raft.StreamLayer for unit tests of the replica;
// the QUIC layer is tested in quic_test.go and by the test cluster.
type tcpLayer struct{ net.Listener }

func (l tcpLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", string(addr), timeout)
}

func newTCPLayer(t *testing.T, addr string) tcpLayer {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return tcpLayer{ln}
}

func waitLeader(t *testing.T, reps []*replica) *replica {
	t.Helper()
	var leader *replica
	testutil.WaitFor(t, 10*time.Second, "a leader", func() bool {
		for _, r := range reps {
			if r != nil && r.isLeader() {
				leader = r
				return true
			}
		}
		return false
	})
	return leader
}

func TestReplicaClusterCommitsFailsOverAndRestarts(t *testing.T) {
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	layers := make([]tcpLayer, 3)
	voters := map[string]string{}
	for i := range layers {
		layers[i] = newTCPLayer(t, "127.0.0.1:0")
		voters[fmt.Sprintf("n%d", i)] = layers[i].Addr().String()
	}
	reps := make([]*replica, 3)
	for i := range reps {
		r, err := openReplica(fmt.Sprintf("n%d", i), dirs[i], layers[i], NewFSM(nil), LoopbackRaftTimings, discardLogger())
		if err != nil {
			t.Fatal(err)
		}
		reps[i] = r
	}
	defer func() {
		for _, r := range reps {
			if r != nil {
				r.close()
			}
		}
	}()
	if err := reps[0].bootstrap(voters); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	leader := waitLeader(t, reps)
	if _, err := leader.apply(ctx, cmdBootstrap, bootstrapCmd{ClusterName: "c", CA: []byte("ca")}, nil); err != nil {
		t.Fatal(err)
	}
	blob := bytes.Repeat([]byte{7}, 1<<20)
	v, err := leader.apply(ctx, cmdModelCommit, modelCommitCmd{Model: ModelRecord{Hash: "h1"}}, blob)
	if err != nil || v.(uint64) != 1 {
		t.Fatalf("commit: %v %v", v, err)
	}
	// A follower refuses writes.
	for _, r := range reps {
		if r != leader {
			if _, err := r.apply(ctx, cmdSetStable, stableCmd{Version: 1}, nil); err == nil {
				t.Fatal("follower accepted a write")
			}
			break
		}
	}
	// Kill the leader: the others elect a new one and keep committing.
	old := leader
	for i, r := range reps {
		if r == old {
			r.close()
			reps[i] = nil
		}
	}
	leader = waitLeader(t, reps)
	if _, err := leader.apply(ctx, cmdModelCommit, modelCommitCmd{Model: ModelRecord{Hash: "h2", Parent: 1}}, blob[:100]); err != nil {
		t.Fatal(err)
	}
	// Restart every node from disk: state comes back.
	for i, r := range reps {
		if r != nil {
			r.close()
			reps[i] = nil
		}
	}
	for i := range reps {
		layers[i] = newTCPLayer(t, voters[fmt.Sprintf("n%d", i)])
		r, err := openReplica(fmt.Sprintf("n%d", i), dirs[i], layers[i], NewFSM(nil), LoopbackRaftTimings, discardLogger())
		if err != nil {
			t.Fatal(err)
		}
		if !r.hasState() {
			t.Fatalf("node %d lost its raft state", i)
		}
		reps[i] = r
	}
	leader = waitLeader(t, reps)
	if err := leader.barrier(ctx); err != nil {
		t.Fatal(err)
	}
	for i, r := range reps {
		testutil.WaitFor(t, 5*time.Second, fmt.Sprintf("node %d to hold both models after its restart", i), func() bool {
			var ok bool
			r.fsm.Read(func(s *State) {
				ok = len(s.Models) == 2 && s.Models[1].Size == len(blob) && s.Models[2].Parent == 1
			})
			if f, err := r.fsm.ModelFile(1); ok && (err != nil || !bytes.Equal(f, blob)) {
				ok = false
			}
			return ok
		})
	}
}
