package agent

import (
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedge/fedge/internal/telemetry"
)

// latencyBuckets are the upper bounds, in seconds, of the predict latency
// histogram: fine below a millisecond, where a local 2nn prediction lands.
var latencyBuckets = []float64{
	0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1,
}

// metrics are the agent's series, exported by /metrics through the
// agent's Prometheus registry. The counters the agent restores from its
// store at start (rounds, bytes sent) and the other hot-path counters are
// atomics that Collect reads at scrape time; the per-(path, code) request
// counts and the predict latency are client_golang vectors.
type metrics struct {
	requests *prometheus.CounterVec
	latency  prometheus.Histogram

	samples         atomic.Uint64 // examples predicted
	roundsJoined    atomic.Uint64
	roundsCompleted atomic.Uint64
	roundsFailed    atomic.Uint64
	trainBatches    atomic.Uint64 // local training steps taken
	bytesSent       atomic.Uint64
	modelBytes      atomic.Uint64 // model download bytes received (deltas as sent)
	modelDeltas     atomic.Uint64 // downloads that came as a delta against a held model
	modelSwaps      atomic.Uint64
	connected       atomic.Bool
	sessions        atomic.Uint64 // sessions opened with a coordinator
	reconnects      atomic.Uint64 // sessions opened after the first
}

// Descriptions of the atomics' series (in the order Collect emits them).
var (
	descSamples         = prometheus.NewDesc("fedge_agent_predicted_samples_total", "Examples classified by /v1/predict.", nil, nil)
	descModelSwaps      = prometheus.NewDesc("fedge_agent_model_swaps_total", "Models swapped in for serving (rollouts and rollbacks).", nil, nil)
	descRoundsJoined    = prometheus.NewDesc("fedge_agent_rounds_joined_total", "Rounds the agent accepted to take part in.", nil, nil)
	descRoundsCompleted = prometheus.NewDesc("fedge_agent_rounds_completed_total", "Rounds whose every stage the agent finished.", nil, nil)
	descRoundsFailed    = prometheus.NewDesc("fedge_agent_rounds_failed_total", "Rounds the agent dropped out of (aborted, excluded, deadline, error, restart).", nil, nil)
	descTrainBatches    = prometheus.NewDesc("fedge_agent_train_batches_total", "Local training steps (mini-batches) taken in rounds.", nil, nil)
	descBytesSent       = prometheus.NewDesc("fedge_agent_round_bytes_sent_total", "Payload bytes the agent sent in round messages (masked vectors, keys, shares).", nil, nil)
	descModelBytes      = prometheus.NewDesc("fedge_agent_model_download_bytes_total", "Bytes of model downloads received (a lossless delta when the agent held an earlier version).", nil, nil)
	descModelDeltas     = prometheus.NewDesc("fedge_agent_model_delta_downloads_total", "Model downloads that came as a lossless delta against a model the agent held.", nil, nil)
	descConnected       = prometheus.NewDesc("fedge_agent_connected", "1 while a session with a coordinator is up.", nil, nil)
	descReconnects      = prometheus.NewDesc("fedge_agent_reconnects_total", "Sessions opened with a coordinator after the first one of this process (after a lost session, a redirect to the leader or a certificate renewal).", nil, nil)
	descModelVersion    = prometheus.NewDesc("fedge_agent_model_version", "Version of the global model being served (0: none).", nil, nil)
)

func newMetrics() *metrics {
	return &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fedge_agent_http_requests_total",
			Help: "HTTP requests served by the inference server, by path and status code.",
		}, []string{"path", "code"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "fedge_agent_predict_duration_seconds",
			Help:    "Latency of /v1/predict requests, from request to response written.",
			Buckets: latencyBuckets,
		}),
	}
}

// request counts one answered request.
func (m *metrics) request(path string, code int) {
	m.requests.WithLabelValues(path, httpCode(code)).Inc()
}

// httpCode formats a status code without allocating for the common ones.
func httpCode(code int) string {
	switch code {
	case 200:
		return "200"
	case 400:
		return "400"
	case 404:
		return "404"
	case 405:
		return "405"
	case 413:
		return "413"
	case 503:
		return "503"
	}
	return strconv.Itoa(code)
}

// observe records one predict request's latency.
func (m *metrics) observe(d time.Duration) { m.latency.Observe(d.Seconds()) }

// sessionOpened counts a session with a coordinator: every one after the
// process's first is a reconnection.
func (m *metrics) sessionOpened() {
	m.connected.Store(true)
	if m.sessions.Add(1) > 1 {
		m.reconnects.Add(1)
	}
}

var _ prometheus.Collector = (*metrics)(nil)

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	m.requests.Describe(ch)
	m.latency.Describe(ch)
	for _, d := range []*prometheus.Desc{descSamples, descModelSwaps, descRoundsJoined, descRoundsCompleted, descRoundsFailed,
		descTrainBatches, descBytesSent, descModelBytes, descModelDeltas, descConnected, descReconnects} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.requests.Collect(ch)
	m.latency.Collect(ch)
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	counter(descSamples, m.samples.Load())
	counter(descModelSwaps, m.modelSwaps.Load())
	counter(descRoundsJoined, m.roundsJoined.Load())
	counter(descRoundsCompleted, m.roundsCompleted.Load())
	counter(descRoundsFailed, m.roundsFailed.Load())
	counter(descTrainBatches, m.trainBatches.Load())
	counter(descBytesSent, m.bytesSent.Load())
	counter(descModelBytes, m.modelBytes.Load())
	counter(descModelDeltas, m.modelDeltas.Load())
	var conn float64
	if m.connected.Load() {
		conn = 1
	}
	ch <- prometheus.MustNewConstMetric(descConnected, prometheus.GaugeValue, conn)
	counter(descReconnects, m.reconnects.Load())
}

// servedCollector exports the version of the model being served.
type servedCollector struct{ served *atomic.Pointer[servedModel] }

func (c servedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descModelVersion }

func (c servedCollector) Collect(ch chan<- prometheus.Metric) {
	var v uint64
	if s := c.served.Load(); s != nil {
		v = s.version
	}
	ch <- prometheus.MustNewConstMetric(descModelVersion, prometheus.GaugeValue, float64(v))
}

// newAgentRegistry returns reg (a new registry with the Go, process and
// build series when nil) with the agent's series registered in it.
func newAgentRegistry(reg *prometheus.Registry, m *metrics, served *atomic.Pointer[servedModel]) (*prometheus.Registry, error) {
	if reg == nil {
		reg = telemetry.NewRegistry()
	}
	for _, c := range []prometheus.Collector{m, servedCollector{served}} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return reg, nil
}
