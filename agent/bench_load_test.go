package agent

import (
	"bytes"
	"flag"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var (
	loadDuration = flag.Duration("load.duration", 20*time.Second, "how long BenchmarkPredictLoad2NN sends requests")
	loadClients  = flag.Int("load.clients", 200, "concurrent clients of BenchmarkPredictLoad2NN")
)

// loadLimits are the inference limits of the load benchmark: the
// defaults, but room for every client at once (the default cap of 64
// answers the 65th concurrent request 503 by design).
func loadLimits() InferenceLimits {
	return InferenceLimits{MaxRequests: 256}.withDefaults()
}

// BenchmarkPredictLoad2NN is the throughput test: -load.clients (200)
// clients, each on its own keep-alive connection, send single-sample 2nn
// requests over loopback HTTP in a closed loop for -load.duration (20 s)
// to a server built as the agent builds it (timeouts, request cap and
// micro-batching from loadLimits). It reports requests per second, the
// latency percentiles and the errors (any non-200 answer or transport
// error), and fails if there is one. Run it with -benchtime=1x.
func BenchmarkPredictLoad2NN(b *testing.B) {
	lim := loadLimits()
	s := newInferenceServer(lim)
	s.served, s.m, s.health = new(atomic.Pointer[servedModel]), newMetrics(), func() healthResponse { return healthResponse{} }
	serve(s, 1, bench2NN(b))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{
		Handler:           s.handler(),
		ReadHeaderTimeout: time.Duration(lim.ReadHeaderTimeout),
		ReadTimeout:       time.Duration(lim.ReadTimeout),
		WriteTimeout:      time.Duration(lim.WriteTimeout),
		IdleTimeout:       time.Duration(lim.IdleTimeout),
	}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Close() })
	url := "http://" + ln.Addr().String() + "/v1/predict"
	clients := *loadClients
	bodies := make([][]byte, 64)
	for i := range bodies {
		bodies[i] = predictBody(input(i))
	}
	tr := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	do := func(body []byte) error {
		resp, err := client.Post(url, "application/json", bytes.NewReader(body))
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return &httpStatusError{resp.StatusCode}
		}
		return nil
	}
	b.ResetTimer()
	for range b.N {
		var (
			wg     sync.WaitGroup
			errs   atomic.Int64
			mu     sync.Mutex
			lat    []time.Duration
			first  atomic.Value
			ok     atomic.Int64
			stop   = time.Now().Add(*loadDuration)
			start  = time.Now()
			warmup = make(chan struct{})
		)
		for c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = do(bodies[c%len(bodies)]) // open the connection
				<-warmup
				mine := make([]time.Duration, 0, 4096)
				for i := c; time.Now().Before(stop); i++ {
					t0 := time.Now()
					if err := do(bodies[i%len(bodies)]); err != nil {
						errs.Add(1)
						first.CompareAndSwap(nil, err.Error())
						continue
					}
					mine = append(mine, time.Since(t0))
					ok.Add(1)
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			}()
		}
		start, stop = time.Now(), time.Now().Add(*loadDuration)
		close(warmup)
		wg.Wait()
		elapsed := time.Since(start)
		slices.Sort(lat)
		if len(lat) == 0 {
			b.Fatalf("no request succeeded (first error: %v)", first.Load())
		}
		pct := func(p float64) float64 {
			return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
		}
		b.ReportMetric(float64(ok.Load())/elapsed.Seconds(), "req/s")
		b.ReportMetric(pct(0.50), "p50-ms")
		b.ReportMetric(pct(0.99), "p99-ms")
		b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
		b.ReportMetric(float64(errs.Load()), "errors")
		b.ReportMetric(float64(s.m.samples.Load())/float64(max(1, s.batches.Load()+s.batch.calls.Load())), "rows/batch")
		if n := errs.Load(); n > 0 {
			b.Errorf("%d requests failed; first: %v", n, first.Load())
		}
	}
}

type httpStatusError struct{ code int }

func (e *httpStatusError) Error() string { return http.StatusText(e.code) }
