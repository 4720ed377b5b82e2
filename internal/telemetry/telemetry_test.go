package telemetry

import (
	"net/http/httptest"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func TestBuildOf(t *testing.T) {
	bi := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.3.0"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.time", Value: "2025-01-02T03:04:05Z"}, {Key: "vcs.modified", Value: "true"},
	}}
	got := buildOf(bi)
	want := Build{Version: "v0.3.0", Revision: "abc123", Time: "2025-01-02T03:04:05Z", Modified: true, GoVersion: "go1.26.8"}
	if got != want {
		t.Fatalf("buildOf = %+v, want %+v", got, want)
	}
}

// TestRegistryServes scrapes a new registry through Handler: the build
// gauge carries the build's labels, next to the Go and process series.
func TestRegistryServes(t *testing.T) {
	reg := NewRegistry()
	rec := httptest.NewRecorder()
	Handler(reg, nil).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(rec.Body.String()))
	if err != nil {
		t.Fatal(err)
	}
	bi := fams["fedge_build_info"]
	if bi == nil || len(bi.GetMetric()) != 1 || bi.GetMetric()[0].GetGauge().GetValue() != 1 {
		t.Fatalf("fedge_build_info: %v", bi)
	}
	labels := map[string]string{}
	for _, l := range bi.GetMetric()[0].GetLabel() {
		labels[l.GetName()] = l.GetValue()
	}
	if b := ReadBuild(); labels["goversion"] != b.GoVersion || labels["version"] != b.Version {
		t.Fatalf("build labels %v, build %+v", labels, b)
	}
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total"} {
		if fams[name] == nil {
			t.Errorf("no %s", name)
		}
	}
}
