package coordinator

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

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

// TestLoadedHostRaftTimingsRideOutStalls holds LoadedHostRaftTimings to
// its comment: a leader survives a stall of 4 s, raft accepts the set
// (the lease at most the heartbeat timeout), and failover stays bounded.
func TestLoadedHostRaftTimingsRideOutStalls(t *testing.T) {
	lh := LoadedHostRaftTimings
	if lh.LeaderLease < 4*time.Second || lh.LeaderLease > lh.Heartbeat || lh.Election < lh.LeaderLease {
		t.Errorf("timings %+v: want a lease of at least 4 s, at most the heartbeat and election timeouts", lh)
	}
	if lh.Heartbeat > 10*time.Second || lh.Election > 10*time.Second {
		t.Errorf("timings %+v: failover after a crash would take over 20 s", lh)
	}
	conf := raft.DefaultConfig()
	conf.LocalID = "x"
	conf.HeartbeatTimeout, conf.ElectionTimeout, conf.LeaderLeaseTimeout, conf.CommitTimeout = lh.Heartbeat, lh.Election, lh.LeaderLease, lh.Commit
	if err := raft.ValidateConfig(conf); err != nil {
		t.Errorf("raft refuses the timings: %v", err)
	}
}

// TestRaftTimingsInConfigFile: a node's configuration file sets the Raft
// timings with Go durations; absent fields stay raft's defaults, and
// unknown fields or negative durations are refused.
func TestRaftTimingsInConfigFile(t *testing.T) {
	var c Config
	if err := json.Unmarshal([]byte(`{"node_id": "c1", "raft": {"heartbeat": "5s", "election": "5s", "leader_lease": "4s", "commit": "10ms"}}`), &c); err != nil {
		t.Fatal(err)
	}
	if c.Raft != LoadedHostRaftTimings {
		t.Fatalf("raft timings %+v, want %+v", c.Raft, LoadedHostRaftTimings)
	}
	b, err := json.Marshal(c.Raft)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"heartbeat":"5s","election":"5s","leader_lease":"4s","commit":"10ms"}`; string(b) != want {
		t.Errorf("marshalled %s, want %s", b, want)
	}
	var partial RaftTimings
	if err := json.Unmarshal([]byte(`{"leader_lease": "800ms"}`), &partial); err != nil || partial != (RaftTimings{LeaderLease: 800 * time.Millisecond}) {
		t.Errorf("partial timings %+v, %v", partial, err)
	}
	if b, err := json.Marshal(Config{NodeID: "c1"}); err != nil || strings.Contains(string(b), "raft") {
		t.Errorf("a config with raft's defaults writes %s (%v); want no raft field", b, err)
	}
	for _, bad := range []string{`{"heartbeat": "-1s"}`, `{"hearbeat": "5s"}`, `{"election": "soon"}`} {
		var rt RaftTimings
		if err := json.Unmarshal([]byte(bad), &rt); err == nil {
			t.Errorf("%s: accepted as %+v", bad, rt)
		}
	}
}
