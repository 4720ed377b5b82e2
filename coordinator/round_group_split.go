package coordinator

import (
	mrand "math/rand/v2"
	"sort"

	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/crypto/secagg"
)

// shardVersion is the protocol version an agent needs to take part in a
// group aggregated by another coordinator than the leader.
const shardVersion = 6

// groupMin is the smallest group a sharded round of spec forms:
// secagg.min_group (default api.DefaultMinGroup), and never fewer than a
// SecAgg+ round takes.
func groupMin(spec *JobSpec) int {
	m := spec.SecAgg.MinGroup
	if m == 0 {
		m = api.DefaultMinGroup
	}
	return max(m, secagg.MinParticipants)
}

// groupCount is how many groups a round of spec splits its joined agents
// into, at most, with nodes coordinators reachable (the leader
// included): one per coordinator and none below groupMin, so at most
// joined/groupMin. "auto" shards only when the cohort holds two groups
// and the agents that speak the sharded protocol (sharding, of the
// joined) fill a group away from the leader; "on" whenever two groups
// fit; "off" never. 1 means the round is not sharded.
func groupCount(spec *JobSpec, joined, sharding, nodes int) int {
	if !spec.SecAgg.Enabled || nodes < 2 {
		return 1
	}
	m := groupMin(spec)
	switch spec.SecAgg.Sharded {
	case api.ShardedOff:
		return 1
	case api.ShardedOn:
	default:
		if joined < 2*m || sharding < m {
			return 1
		}
	}
	return max(1, min(nodes, joined/m))
}

// splitGroups splits the joined agents into at most g groups of at least
// m agents each. Agents for which sharding is false (older protocol
// versions, which cannot open a session with another coordinator) all go
// into group 0, the leader's; the others are dealt, in an order shuffled
// by seed. The leader's group gets half the share of each other group
// (n/(2g−1) agents, but at least m and every older agent): the leader
// alone also holds every agent's control session, invites and plans the
// whole cohort, runs Raft and commits, which at thousands of agents costs
// it about what half a group does (docs/BENCHMARKS.md, the 5,000-agent
// sharded round). The other groups' sizes differ by at most one. The split
// is a function of the agents' IDs and the seed.
// It returns fewer groups when the older agents leave too few for the
// others, and one group (every agent) when no two groups fit.
func splitGroups(links []AgentLink, g, m int, seed [32]byte, sharding func(AgentLink) bool) [][]AgentLink {
	var old, fresh []AgentLink
	for _, l := range links {
		if sharding(l) {
			fresh = append(fresh, l)
		} else {
			old = append(old, l)
		}
	}
	byID := func(l []AgentLink) {
		sort.Slice(l, func(a, b int) bool { return l[a].AgentID() < l[b].AgentID() })
	}
	byID(old)
	byID(fresh)
	r := mrand.New(mrand.NewChaCha8(seed))
	r.Shuffle(len(fresh), func(i, j int) { fresh[i], fresh[j] = fresh[j], fresh[i] })
	n := len(links)
	size0 := 0
	for ; g >= 2; g-- {
		size0 = max(n/(2*g-1), len(old), m)
		if (n-size0)/(g-1) >= m {
			break
		}
	}
	if g < 2 {
		all := append(old, fresh...)
		byID(all)
		return [][]AgentLink{all}
	}
	groups := make([][]AgentLink, g)
	take := size0 - len(old)
	groups[0] = append(old, fresh[:take]...)
	fresh = fresh[take:]
	for i := 1; i < g; i++ {
		k := len(fresh) / (g - i)
		groups[i] = fresh[:k:k]
		fresh = fresh[k:]
	}
	for _, gr := range groups {
		byID(gr)
	}
	return groups
}
