package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedge/fedge/internal/testcluster"
)

// TestRunAgainstCluster drives a real 3-node cluster with 3 agents through
// the api package alone: the job runs its rounds and the example reports
// each one.
func TestRunAgainstCluster(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Agents: 3, Shards: 100, Partition: "iid"})
	var addrs []string
	for _, p := range c.Peers {
		addrs = append(addrs, p.Addr)
	}
	var out bytes.Buffer
	cfg := config{coordinators: addrs, adminDir: filepath.Join(c.Dir, "admin"), model: "logreg", rounds: 2, minClients: 3, timeout: 3 * time.Minute}
	if err := run(context.Background(), cfg, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{"started job api-client-", "round 1 committed", "round 2 committed", "done after 2 rounds"} {
		if !strings.Contains(got, want) {
			t.Fatalf("output lacks %q:\n%s", want, got)
		}
	}
}
