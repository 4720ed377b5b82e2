package coordinator

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"reflect"
	"testing"

	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/protocol"
)

// versionLink is an agent link of a given protocol version, for the
// group split (it carries no traffic).
type versionLink struct {
	id      string
	version uint32
}

func (l *versionLink) AgentID() string                              { return l.id }
func (l *versionLink) SigningKey() ed25519.PublicKey                { return nil }
func (l *versionLink) Version() uint32                              { return l.version }
func (l *versionLink) Send(context.Context, protocol.Message) error { return nil }
func (l *versionLink) Request(context.Context, protocol.Message) (protocol.Message, error) {
	return nil, nil
}

func links(n, old int) []AgentLink {
	out := make([]AgentLink, n)
	for i := range out {
		v := uint32(shardVersion)
		if i < old {
			v = shardVersion - 1
		}
		out[i] = &versionLink{id: fmt.Sprintf("agent-%03d", i), version: v}
	}
	return out
}

func ids(groups [][]AgentLink) [][]string {
	out := make([][]string, len(groups))
	for i, g := range groups {
		for _, l := range g {
			out[i] = append(out[i], l.AgentID())
		}
	}
	return out
}

func TestSplitGroups(t *testing.T) {
	tests := []struct {
		name         string
		n, old, g, m int
		wantSizes    []int
	}{
		{"even", 9, 0, 3, 3, []int{3, 3, 3}},
		{"remainder", 10, 0, 3, 3, []int{3, 3, 4}},
		{"fewer groups than asked", 7, 0, 3, 3, []int{3, 4}},
		{"old agents in the leader's group", 12, 5, 3, 3, []int{5, 3, 4}},
		{"old agents leave room for one other group", 9, 5, 3, 3, []int{5, 4}},
		{"old agents leave no room", 8, 6, 3, 3, []int{8}},
		{"too few for two", 5, 0, 3, 3, []int{5}},
		{"the leader's group is half the others'", 1000, 10, 3, 100, []int{200, 400, 400}},
		{"half the others' but not below the minimum", 1000, 0, 3, 300, []int{300, 350, 350}},
		{"the minimum leaves no room to halve", 900, 0, 3, 300, []int{300, 300, 300}},
		{"two coordinators", 999, 0, 2, 100, []int{333, 666}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var seed [32]byte
			seed[0] = 7
			all := links(tt.n, tt.old)
			groups := splitGroups(all, tt.g, tt.m, seed, speaksShards)
			var sizes []int
			seen := map[string]bool{}
			for i, g := range groups {
				sizes = append(sizes, len(g))
				if len(groups) > 1 && len(g) < tt.m {
					t.Errorf("group %d has %d agents, below the minimum %d", i, len(g), tt.m)
				}
				for _, l := range g {
					if seen[l.AgentID()] {
						t.Errorf("agent %s in two groups", l.AgentID())
					}
					seen[l.AgentID()] = true
					if i > 0 && !speaksShards(l) {
						t.Errorf("agent %s of an older version in group %d, not the leader's", l.AgentID(), i)
					}
				}
			}
			if len(seen) != tt.n {
				t.Errorf("%d agents in the groups, want %d", len(seen), tt.n)
			}
			if !reflect.DeepEqual(sizes, tt.wantSizes) {
				t.Errorf("group sizes %v, want %v", sizes, tt.wantSizes)
			}
			// Deterministic given the seed, whatever the input order.
			rev := append([]AgentLink(nil), all...)
			for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
				rev[i], rev[j] = rev[j], rev[i]
			}
			if again := splitGroups(rev, tt.g, tt.m, seed, speaksShards); !reflect.DeepEqual(ids(again), ids(groups)) {
				t.Errorf("the same seed split differently: %v vs %v", ids(again), ids(groups))
			}
			seed[0] = 8
			if other := splitGroups(all, tt.g, tt.m, seed, speaksShards); len(groups) > 1 && tt.n-tt.old > 2*tt.m && reflect.DeepEqual(ids(other), ids(groups)) {
				t.Errorf("another seed gave the same split %v", ids(groups))
			}
		})
	}
}

func TestGroupCount(t *testing.T) {
	tests := []struct {
		name                    string
		sharded                 string
		minGroup                int
		joined, sharding, nodes int
		want                    int
	}{
		{"auto below two default groups", "", 0, 199, 199, 3, 1},
		{"auto at two default groups", "", 0, 200, 200, 3, 2},
		{"auto one per coordinator", api.ShardedAuto, 0, 1000, 1000, 3, 3},
		{"auto with too few new agents", api.ShardedAuto, 0, 1000, 99, 3, 1},
		{"one coordinator", api.ShardedAuto, 0, 1000, 1000, 1, 1},
		{"off", api.ShardedOff, 2, 1000, 1000, 3, 1},
		{"on small groups", api.ShardedOn, 2, 6, 6, 3, 2},
		{"on never below three", api.ShardedOn, 1, 5, 5, 3, 1},
		{"on capped by min_group", api.ShardedOn, 4, 11, 11, 5, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := &JobSpec{SecAgg: SecAggSpec{Enabled: true, Sharded: tt.sharded, MinGroup: tt.minGroup}}
			if got := groupCount(spec, tt.joined, tt.sharding, tt.nodes); got != tt.want {
				t.Errorf("groupCount = %d, want %d", got, tt.want)
			}
		})
	}
	if got := groupCount(&JobSpec{SecAgg: SecAggSpec{Sharded: api.ShardedOn, MinGroup: 3}}, 100, 100, 3); got != 1 {
		t.Errorf("without secure aggregation: %d groups, want 1", got)
	}
}

func TestCheckSharding(t *testing.T) {
	tests := []struct {
		name string
		s    SecAggSpec
		ok   bool
	}{
		{"defaults", SecAggSpec{Enabled: true}, true},
		{"on", SecAggSpec{Enabled: true, Sharded: "on", MinGroup: 2}, true},
		{"unknown mode", SecAggSpec{Enabled: true, Sharded: "yes"}, false},
		{"on without secagg", SecAggSpec{Sharded: "on"}, false},
		{"negative min_group", SecAggSpec{Enabled: true, MinGroup: -1}, false},
		{"threshold above min_group", SecAggSpec{Enabled: true, Sharded: "on", MinGroup: 4, T: 5}, false},
		{"threshold above min_group, off", SecAggSpec{Enabled: true, Sharded: "off", MinGroup: 4, T: 5}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkSharding(&JobSpec{SecAgg: tt.s})
			if (err == nil) != tt.ok {
				t.Fatalf("checkSharding = %v, want ok %v", err, tt.ok)
			}
		})
	}
}
