package coordinator

import (
	"reflect"
	"testing"

	"github.com/fedge/fedge/coordinator/api"
)

// TestAdminRoutes reads the admin API's rules from its one table: every
// verb the api package names has a route, and which of them write and
// which only the leader can answer is as documented.
func TestAdminRoutes(t *testing.T) {
	writes := []string{
		api.VerbClusterJoin, api.VerbClusterRemove, api.VerbTokensCreate, api.VerbTokensRevoke,
		api.VerbAgentsRevoke, api.VerbAgentsLabel, api.VerbJobsStart, api.VerbJobsStop, api.VerbModelsPin,
		api.VerbModelsExplain, api.VerbRolloutStart, api.VerbRolloutAction, api.VerbAdminCert, api.VerbAdminsRevoke,
	}
	leaderReads := []string{api.VerbAgentsList, api.VerbAgentsShow, api.VerbJobsStatus, api.VerbRolloutStatus}
	reads := []string{
		api.VerbClusterStatus, api.VerbTokensList, api.VerbJobsList, api.VerbRoundsList, api.VerbRoundsShow,
		api.VerbModelsList, api.VerbModelsShow, api.VerbModelsExplanation, api.VerbAdminsList, api.VerbAuditList,
		api.VerbConsoleLogin, // answered by the node asked: the link opens its console
	}
	// Calls whose request carries a file run on a bulk stream.
	bulkWrites := []string{api.VerbModelsImport}
	check := func(verbs []string, write, leaderRead, bulk bool) {
		for _, v := range verbs {
			rt, ok := adminRoutes[v]
			if !ok {
				t.Errorf("%s: no route", v)
				continue
			}
			if rt.write != write || rt.leaderRead != leaderRead {
				t.Errorf("%s: write %v leaderRead %v, want %v %v", v, rt.write, rt.leaderRead, write, leaderRead)
			}
			if rt.req == nil || rt.resp == nil || (rt.run == nil) != bulk || (rt.bulk == nil) == bulk {
				t.Errorf("%s: route without types or handler (bulk %v)", v, bulk)
			}
		}
	}
	check(writes, true, false, false)
	check(leaderReads, false, true, false)
	check(reads, false, false, false)
	check(bulkWrites, true, false, true)
	if n := len(writes) + len(leaderReads) + len(reads) + len(bulkWrites); n != len(adminRoutes) {
		t.Errorf("%d routes, %d verbs listed here", len(adminRoutes), n)
	}
	// The table carries the call's types: jobs.start takes a JobSpec and
	// answers a Job.
	if rt := adminRoutes[api.VerbJobsStart]; rt.req != reflect.TypeFor[api.JobSpec]() || rt.resp != reflect.TypeFor[*api.Job]() {
		t.Errorf("jobs.start types %v -> %v", rt.req, rt.resp)
	}
}
