package inproc_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/internal/inproc"
)

// TestStartWithoutTestingTB: Start, without a testing.TB, brings up a
// one-node cluster in a folder of its own that answers the admin API under
// its name; KillNode refuses an unproxied cluster; Close removes the
// folder.
func TestStartWithoutTestingTB(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := inproc.Start(ctx, inproc.Options{Name: "solo", Nodes: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, n, err := c.Leader(ctx); err != nil || n != c.Nodes[0] {
		t.Fatalf("leader %v, %v; want node c1", n, err)
	}
	var st api.ClusterStatus
	if err := c.Admin.Call(ctx, api.VerbClusterStatus, api.QueryOptions{}, nil, &st); err != nil || st.Cluster != "solo" {
		t.Fatalf("cluster status %+v, %v", st, err)
	}
	if err := c.KillNode(0); !errors.Is(err, inproc.ErrNotProxied) {
		t.Fatalf("KillNode on an unproxied cluster: %v, want ErrNotProxied", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(c.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("after Close, %s: %v; want it removed", c.Dir, err)
	}
	if _, n := c.LeaderNow(); n != nil {
		t.Fatal("a node still leads after Close")
	}
}
