package agent

import (
	"testing"
	"time"

	"github.com/fedge/fedge/internal/testutil"
)

// TestReconnectsCountsOnlyReconnections: the first session of a process
// is no reconnection; a session opened after the coordinator dropped the
// first one is. The registry carries the Go, process and build series.
func TestReconnectsCountsOnlyReconnections(t *testing.T) {
	c := newTestCoord(t, nil, newHub(nil))
	ra := enrolledAgent(t, c, t.TempDir(), nil)
	url := "http://" + ra.InferenceAddr() + "/metrics"
	value := func(name string) float64 {
		v, ok := testutil.Scrape(t, url).Value(name)
		if !ok {
			t.Fatalf("metrics lack %s", name)
		}
		return v
	}
	testutil.WaitFor(t, 10*time.Second, "connected in the metrics", func() bool { return value("fedge_agent_connected") == 1 })
	if got := value("fedge_agent_reconnects_total"); got != 0 {
		t.Fatalf("fedge_agent_reconnects_total after the first session: %v, want 0", got)
	}
	m := testutil.Scrape(t, url)
	for _, name := range []string{"go_goroutines", "go_memstats_alloc_bytes", "process_start_time_seconds"} {
		if _, ok := m.Value(name); !ok {
			t.Errorf("metrics lack %s", name)
		}
	}
	if v, ok := m.Value("fedge_build_info"); v != 1 || !ok {
		t.Errorf("fedge_build_info %v (present %v), want 1", v, ok)
	}

	c.kick(ra.ID())
	testutil.WaitFor(t, 20*time.Second, "a reconnection counted", func() bool {
		return c.session(ra.ID()) != nil && value("fedge_agent_reconnects_total") == 1
	})
}
