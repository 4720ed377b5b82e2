package agent

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// latencyBuckets are the upper bounds, in seconds, of the predict latency
// histogram: fine below a millisecond, where a local 2nn prediction lands.
var latencyBuckets = [...]float64{
	0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1,
}

// metrics are the agent's counters, exported in the Prometheus text format
// by /metrics. Everything is updated lock-free except the per-(path, code)
// request counts, which take a short mutex.
type metrics struct {
	mu       sync.Mutex
	requests map[reqKey]uint64

	latency      [len(latencyBuckets) + 1]atomic.Uint64 // last is +Inf
	latencyCount atomic.Uint64
	latencyNanos atomic.Uint64
	samples      atomic.Uint64 // examples predicted

	roundsJoined    atomic.Uint64
	roundsCompleted atomic.Uint64
	roundsFailed    atomic.Uint64
	trainBatches    atomic.Uint64 // local training steps taken
	bytesSent       atomic.Uint64
	modelBytes      atomic.Uint64 // model download bytes received (deltas as sent)
	modelDeltas     atomic.Uint64 // downloads that came as a delta against a held model
	modelSwaps      atomic.Uint64
	connected       atomic.Bool
	reconnects      atomic.Uint64
}

type reqKey struct {
	path string
	code int
}

func newMetrics() *metrics { return &metrics{requests: map[reqKey]uint64{}} }

func (m *metrics) request(path string, code int) {
	m.mu.Lock()
	m.requests[reqKey{path, code}]++
	m.mu.Unlock()
}

// observe records one predict request's latency.
func (m *metrics) observe(d time.Duration) {
	s := d.Seconds()
	i := sort.SearchFloat64s(latencyBuckets[:], s)
	m.latency[i].Add(1)
	m.latencyCount.Add(1)
	m.latencyNanos.Add(uint64(d.Nanoseconds()))
}

// write renders the metrics in the Prometheus text exposition format
// (version 0.0.4). model is the served model's version, 0 for none.
func (m *metrics) write(w io.Writer, model uint64) error {
	bw := bufio.NewWriter(w)
	p := func(format string, args ...any) { fmt.Fprintf(bw, format, args...) }
	head := func(name, typ, help string) { p("# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ) }

	head("fedge_agent_http_requests_total", "counter", "HTTP requests served by the inference server, by path and status code.")
	m.mu.Lock()
	keys := make([]reqKey, 0, len(m.requests))
	for k := range m.requests {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].path != keys[j].path {
			return keys[i].path < keys[j].path
		}
		return keys[i].code < keys[j].code
	})
	counts := make([]uint64, len(keys))
	for i, k := range keys {
		counts[i] = m.requests[k]
	}
	m.mu.Unlock()
	for i, k := range keys {
		p("fedge_agent_http_requests_total{path=%q,code=\"%d\"} %d\n", k.path, k.code, counts[i])
	}

	head("fedge_agent_predict_duration_seconds", "histogram", "Latency of /v1/predict requests, from request to response written.")
	var cum uint64
	for i, ub := range latencyBuckets {
		cum += m.latency[i].Load()
		p("fedge_agent_predict_duration_seconds_bucket{le=%q} %d\n", strconv.FormatFloat(ub, 'g', -1, 64), cum)
	}
	cum += m.latency[len(latencyBuckets)].Load()
	p("fedge_agent_predict_duration_seconds_bucket{le=\"+Inf\"} %d\n", cum)
	p("fedge_agent_predict_duration_seconds_sum %s\n", formatFloat(float64(m.latencyNanos.Load())/1e9))
	p("fedge_agent_predict_duration_seconds_count %d\n", m.latencyCount.Load())

	gauge := func(name, help string, v uint64) {
		head(name, "gauge", help)
		p("%s %d\n", name, v)
	}
	counter := func(name, help string, v uint64) {
		head(name, "counter", help)
		p("%s %d\n", name, v)
	}
	counter("fedge_agent_predicted_samples_total", "Examples classified by /v1/predict.", m.samples.Load())
	gauge("fedge_agent_model_version", "Version of the global model being served (0: none).", model)
	counter("fedge_agent_model_swaps_total", "Models swapped in for serving (rollouts and rollbacks).", m.modelSwaps.Load())
	counter("fedge_agent_rounds_joined_total", "Rounds the agent accepted to take part in.", m.roundsJoined.Load())
	counter("fedge_agent_rounds_completed_total", "Rounds whose every stage the agent finished.", m.roundsCompleted.Load())
	counter("fedge_agent_rounds_failed_total", "Rounds the agent dropped out of (aborted, excluded, deadline, error, restart).", m.roundsFailed.Load())
	counter("fedge_agent_train_batches_total", "Local training steps (mini-batches) taken in rounds.", m.trainBatches.Load())
	counter("fedge_agent_round_bytes_sent_total", "Payload bytes the agent sent in round messages (masked vectors, keys, shares).", m.bytesSent.Load())
	counter("fedge_agent_model_download_bytes_total", "Bytes of model downloads received (a lossless delta when the agent held an earlier version).", m.modelBytes.Load())
	counter("fedge_agent_model_delta_downloads_total", "Model downloads that came as a lossless delta against a model the agent held.", m.modelDeltas.Load())
	var conn uint64
	if m.connected.Load() {
		conn = 1
	}
	gauge("fedge_agent_connected", "1 while a session with a coordinator is up.", conn)
	counter("fedge_agent_reconnects_total", "Sessions opened with a coordinator.", m.reconnects.Load())
	return bw.Flush()
}

func formatFloat(v float64) string {
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}
