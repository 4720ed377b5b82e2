package agent

import (
	"net/http"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape reads the agent's /metrics with the Prometheus text parser.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("metrics do not parse: %v", err)
	}
	return fams
}

// value is the first sample of a counter or gauge family, -1 if absent.
func value(fams map[string]*dto.MetricFamily, name string) float64 {
	f, ok := fams[name]
	if !ok || len(f.GetMetric()) == 0 {
		return -1
	}
	m := f.GetMetric()[0]
	if c := m.GetCounter(); c != nil {
		return c.GetValue()
	}
	return m.GetGauge().GetValue()
}

// TestReconnectsCountsOnlyReconnections: the first session of a process
// is no reconnection; a session opened after the coordinator dropped the
// first one is. The registry carries the Go, process and build series.
func TestReconnectsCountsOnlyReconnections(t *testing.T) {
	c := newTestCoord(t, nil, newHub(nil))
	ra := enrolledAgent(t, c, t.TempDir(), nil)
	addr := ra.InferenceAddr()
	eventually(t, 10*time.Second, "connected in the metrics", func() bool { return value(scrape(t, addr), "fedge_agent_connected") == 1 })
	fams := scrape(t, addr)
	if got := value(fams, "fedge_agent_reconnects_total"); got != 0 {
		t.Fatalf("fedge_agent_reconnects_total after the first session: %v, want 0", got)
	}
	for _, name := range []string{"fedge_build_info", "go_goroutines", "go_memstats_alloc_bytes", "process_start_time_seconds"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("metrics lack %s", name)
		}
	}
	if v := value(fams, "fedge_build_info"); v != 1 {
		t.Errorf("fedge_build_info %v, want 1", v)
	}

	c.kick(ra.ID())
	eventually(t, 20*time.Second, "a reconnection counted", func() bool {
		return c.session(ra.ID()) != nil && value(scrape(t, addr), "fedge_agent_reconnects_total") == 1
	})
}
