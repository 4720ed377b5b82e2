package agent

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fedge/fedge/crypto/identity"
	"github.com/fedge/fedge/internal/testutil"
	"github.com/fedge/fedge/tensor"
)

// bench2NN returns the FedAvg 2nn model (199,210 parameters).
func bench2NN(b *testing.B) *tensor.Model {
	spec, err := tensor.NamedSpec(tensor.Spec2NN)
	if err != nil {
		b.Fatal(err)
	}
	m, err := tensor.NewModel(spec, 1)
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// benchServer serves m on a loopback TCP port with the agent's handler.
func benchServer(b *testing.B, m *tensor.Model) string {
	s := &inferenceServer{served: new(atomic.Pointer[servedModel]), m: newMetrics(), health: func() healthResponse { return healthResponse{} }}
	serve(s, 1, m)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: s.handler()}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String() + "/v1/predict"
}

// BenchmarkPredictLatency2NN sends single-sample 2nn predictions over
// loopback HTTP at a fixed 1,000 requests/s and reports the latency
// percentiles. A request sent late because the previous one was still
// running is timed from its scheduled time, so a server that falls behind
// is charged for the queueing it causes (no coordinated omission); one
// sent on time is timed from when it is sent, so the client's own timer
// slack is not.
func BenchmarkPredictLatency2NN(b *testing.B) {
	url := benchServer(b, bench2NN(b))
	body := predictBody(input(1))
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	do := func() {
		resp, err := client.Post(url, "application/json", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	for range 50 { // warm the connection and the model's scratch pools
		do()
	}
	const interval = time.Millisecond // 1,000 requests/s
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		due := start.Add(time.Duration(i) * interval)
		sent := due
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
			sent = time.Now()
		}
		do()
		lat = append(lat, time.Since(sent))
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) }
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds()), "max-µs")
	b.ReportMetric(float64(len(body)), "req-bytes")
}

// BenchmarkPredictBatch2NN10k classifies 10,000 2nn samples with the
// served model's Predict, the engine call behind /v1/predict.
func BenchmarkPredictBatch2NN10k(b *testing.B) {
	m := bench2NN(b)
	const n = 10_000
	x := make([]float32, 0, n*784)
	for i := range n {
		x = append(x, input(i)...)
	}
	if _, err := m.Predict(x, n); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		if _, err := m.Predict(x, n); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "samples/s")
}

// BenchmarkPredictHTTPBatch2NN1000 posts batches of 1,000 samples (about
// 7 MB of JSON) to /v1/predict: JSON decoding, prediction and encoding.
func BenchmarkPredictHTTPBatch2NN1000(b *testing.B) {
	url := benchServer(b, bench2NN(b))
	const n = 1000
	rows := make([][]float32, n)
	for i := range rows {
		rows[i] = input(i)
	}
	body := predictBody(rows...)
	if len(body) > MaxPredictBody {
		b.Fatalf("body of %d bytes over the limit", len(body))
	}
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	for range b.N {
		resp, err := http.Post(url, "application/json", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		var pr PredictResponse
		err = json.NewDecoder(resp.Body).Decode(&pr)
		resp.Body.Close()
		if err != nil || len(pr.Predictions) != n {
			b.Fatalf("status %d: %v", resp.StatusCode, err)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "samples/s")
}

// BenchmarkAgentIdleRSS starts an agent process (this test binary running
// New and Run) holding a 20-agent demo shard of real MNIST and a served
// 2nn model, with no coordinator reachable, and reports its resident
// memory once it has settled.
func BenchmarkAgentIdleRSS(b *testing.B) {
	mnist := testutil.MNISTDir(b)
	dir := b.TempDir()
	st, err := openStore(filepath.Join(dir, "state"), testLockWait)
	if err != nil {
		b.Fatal(err)
	}
	m := bench2NN(b)
	blob, _ := m.MarshalBinary()
	if err := st.promote(&modelRecord{version: 1, hash: m.Hash(), rolledOut: time.Now(), modelData: modelData{blob: blob}}); err != nil {
		b.Fatal(err)
	}
	st.close()
	ca, _ := identity.NewCA(rand.Reader, "elsewhere", time.Now())
	tok, _, err := identity.NewJoinToken(rand.Reader, ca, time.Hour, nil, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Coordinators = []string{"127.0.0.1:9"} // discard port: nobody answers
	cfg.JoinToken = tok
	cfg.DataDir = filepath.Join(dir, "state")
	cfg.InferenceListen = "127.0.0.1:0"
	cfg.Dataset = DatasetConfig{Kind: DatasetMNIST, Path: mnist, Partition: PartitionPathological, Shards: 20, Shard: 3, Seed: 1, HeldOut: 0.1}
	raw, _ := json.Marshal(cfg)
	path := filepath.Join(dir, "agent.json")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		b.Fatal(err)
	}
	var rss float64
	for range b.N {
		cmd, addr := startChild(b, path)
		resp, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		time.Sleep(3 * time.Second)
		rss = readRSS(b, cmd.Process.Pid)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	b.ReportMetric(rss, "RSS-MiB")
}

// readRSS returns a process's resident set size in MiB.
func readRSS(b *testing.B, pid int) float64 {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Skip("no /proc:", err)
	}
	for _, line := range strings.Split(string(st), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				b.Fatal(err)
			}
			return float64(kb) / 1024
		}
	}
	b.Fatal("no VmRSS")
	return 0
}

// BenchmarkPredictHandler2NN runs the /v1/predict handler in process on one
// 2nn sample (JSON decode, predict, JSON encode) without the network: the
// CPU cost behind each request of BenchmarkPredictLatency2NN.
func BenchmarkPredictHandler2NN(b *testing.B) {
	s := &inferenceServer{served: new(atomic.Pointer[servedModel]), m: newMetrics()}
	serve(s, 1, bench2NN(b))
	h := s.handler()
	body := predictBody(input(1))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1/predict", bytes.NewReader(body)))
		if w.Code != http.StatusOK {
			b.Fatal(w.Code)
		}
	}
}
