package coordinator

import (
	"testing"

	"github.com/hashicorp/raft"
)

// TestLoopbackRaftTimingsAgainstDefaults holds LoopbackRaftTimings to what
// its comment says: raft's heartbeat and election timeouts, a longer lease
// and a shorter commit timeout.
func TestLoopbackRaftTimingsAgainstDefaults(t *testing.T) {
	def, lb := raft.DefaultConfig(), LoopbackRaftTimings
	if lb.Heartbeat != def.HeartbeatTimeout || lb.Election != def.ElectionTimeout {
		t.Errorf("heartbeat %v, election %v; raft's defaults are %v and %v", lb.Heartbeat, lb.Election, def.HeartbeatTimeout, def.ElectionTimeout)
	}
	if lb.LeaderLease <= def.LeaderLeaseTimeout || lb.LeaderLease > lb.Heartbeat {
		t.Errorf("leader lease %v, want longer than raft's %v and at most the heartbeat %v", lb.LeaderLease, def.LeaderLeaseTimeout, lb.Heartbeat)
	}
	if lb.Commit >= def.CommitTimeout {
		t.Errorf("commit timeout %v, want shorter than raft's %v", lb.Commit, def.CommitTimeout)
	}
}
