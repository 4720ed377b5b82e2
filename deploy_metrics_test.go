package fedge_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// readmeMetrics returns the metric names of the README's metrics table.
func readmeMetrics(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z_]+)").FindAllStringSubmatch(string(b), -1) {
		names[m[1]] = true
	}
	if len(names) < 20 {
		t.Fatalf("the README's metrics table lists %d metrics", len(names))
	}
	return names
}

// TestGrafanaDashboardQueriesDocumentedMetrics parses
// deploy/grafana-dashboard.json and checks that every fedge series its
// queries use is one the README's table lists (a renamed metric breaks
// the dashboard), and that the scrape example names the jobs the
// dashboard selects.
func TestGrafanaDashboardQueriesDocumentedMetrics(t *testing.T) {
	documented := readmeMetrics(t)
	b, err := os.ReadFile(filepath.Join("deploy", "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Query string `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	series := regexp.MustCompile(`\bfedge_[a-z_]+`)
	used := map[string]bool{}
	for _, p := range dash.Panels {
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			for _, name := range series.FindAllString(q.Expr, -1) {
				name = strings.TrimSuffix(name, "_bucket")
				used[name] = true
				if !documented[name] {
					t.Errorf("panel %q queries %s, which the README's metrics table does not list", p.Title, name)
				}
			}
		}
	}
	for _, want := range []string{"fedge_coordinator_rounds_total", "fedge_coordinator_round_stage_duration_seconds", "fedge_coordinator_round_dropouts_total",
		"fedge_coordinator_agents_connected", "fedge_coordinator_raft_leader", "fedge_coordinator_raft_term", "fedge_coordinator_round_bytes_received_total"} {
		if !used[want] {
			t.Errorf("the dashboard does not chart %s", want)
		}
	}
	scrape, err := os.ReadFile(filepath.Join("deploy", "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range dash.Templating.List {
		if strings.HasSuffix(v.Name, "_job") && !strings.Contains(string(scrape), "job_name: "+v.Query+"\n") {
			t.Errorf("deploy/prometheus.yml has no job %q, which the dashboard's $%s selects", v.Query, v.Name)
		}
	}
}
