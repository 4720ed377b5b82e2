package telemetry

import (
	"log/slog"
	"net/http"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NewRegistry returns a registry holding the Go runtime and process
// collectors and the fedge_build_info gauge.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		BuildInfo(),
	)
	return reg
}

// Build is what the binary knows of its own build.
type Build struct {
	// Version is the main module's version ("(devel)" for a build from a
	// work tree, "" when the binary carries no build information).
	Version string
	// Revision and Time are the VCS commit and its time, when the build
	// recorded them (go build without -buildvcs=false in a git checkout).
	Revision, Time string
	// Modified is true when the work tree had uncommitted changes.
	Modified bool
	// GoVersion is the toolchain the binary was built with.
	GoVersion string
}

// ReadBuild returns the running binary's build information.
func ReadBuild() Build {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return Build{GoVersion: runtime.Version()}
	}
	return buildOf(bi)
}

// buildOf extracts a Build from the Go build information.
func buildOf(bi *debug.BuildInfo) Build {
	b := Build{Version: bi.Main.Version, GoVersion: bi.GoVersion}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.time":
			b.Time = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	if b.GoVersion == "" {
		b.GoVersion = runtime.Version()
	}
	return b
}

// BuildInfo returns the fedge_build_info gauge: always 1, with the
// build's version, VCS revision and time, and Go version as labels.
func BuildInfo() prometheus.Collector {
	return buildInfo(ReadBuild())
}

func buildInfo(b Build) prometheus.Collector {
	rev := b.Revision
	if rev != "" && b.Modified {
		rev += "-dirty"
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "fedge_build_info",
		Help: "Always 1; the labels say which build runs: the module version, the VCS revision and commit time (empty when the build did not record them) and the Go version.",
		ConstLabels: prometheus.Labels{
			"version": b.Version, "revision": rev, "revision_time": b.Time, "goversion": b.GoVersion,
		},
	})
	g.Set(1)
	return g
}

// Handler serves the registry's series (the text format, or OpenMetrics
// and protobuf when the scraper asks for them). Errors gathering a
// collector are logged and the rest is served.
func Handler(reg *prometheus.Registry, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      reg,
	})
}
