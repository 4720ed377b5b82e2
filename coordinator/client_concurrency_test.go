package coordinator_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/fedge/fedge/coordinator/api"
)

// TestClientFirstCallsConcurrently: goroutines sharing a fresh api.Client
// (the console, the simulator) all make their first call at once. Each
// dials; the first session installed serves them all, and no call fails
// because another goroutine closed the session it was using.
func TestClientFirstCallsConcurrently(t *testing.T) {
	c := newCluster(t, 1)
	c.Leader()
	for attempt := range 3 {
		a, err := api.Load(filepath.Join(c.Dir, "admin"), []string{c.Peers[0].Addr})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for range 16 {
			wg.Go(func() {
				if _, err := a.Cluster().Status(ctx, api.QueryOptions{}); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		cancel()
		a.Close()
		close(errs)
		for err := range errs {
			t.Errorf("attempt %d: a concurrent first call failed: %v", attempt, err)
		}
	}
}
