package agent

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"math"
	"net"
	"net/http"
	"slices"
	"strconv"
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
// requests as JSON over loopback HTTP in a closed loop for -load.duration
// (20 s) to a server built as the agent builds it (timeouts, request cap
// and micro-batching from loadLimits). It reports requests per second,
// the latency percentiles and the errors (any non-200 answer or transport
// error), and the CPU time the process (server and clients) spent per
// request, and fails if there is one. Run it with -benchtime=1x.
func BenchmarkPredictLoad2NN(b *testing.B) { benchPredictLoad(b, "application/json") }

// BenchmarkPredictLoad2NNBinary is BenchmarkPredictLoad2NN with binary
// tensor bodies (application/octet-stream: little-endian float32 rows).
func BenchmarkPredictLoad2NNBinary(b *testing.B) { benchPredictLoad(b, contentTypeTensor) }

func benchPredictLoad(b *testing.B, contentType string) {
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
	addr := ln.Addr().String()
	clients := *loadClients
	// The requests, whole (head and body), built once: the load
	// generator writes one and reads one answer per round trip, so the
	// figure measures the server rather than the client's HTTP stack.
	reqs := make([][]byte, 64)
	for i := range reqs {
		var body []byte
		if contentType == contentTypeTensor {
			body = tensorBody(input(i))
		} else {
			body = predictBody(input(i))
		}
		reqs[i] = rawRequest(addr, "/v1/predict", contentType, body)
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
				fail := func(err error) {
					errs.Add(1)
					first.CompareAndSwap(nil, err.Error())
				}
				lc, err := dialLoad(addr, *loadDuration+30*time.Second)
				if err != nil {
					fail(err)
					<-warmup
					return
				}
				defer lc.conn.Close()
				if err := lc.do(reqs[c%len(reqs)]); err != nil { // warm the connection
					fail(err)
				}
				<-warmup
				mine := make([]time.Duration, 0, 4096)
				for i := c; time.Now().Before(stop); i++ {
					t0 := time.Now()
					if err := lc.do(reqs[i%len(reqs)]); err != nil {
						fail(err)
						return // the connection's framing is lost
					}
					mine = append(mine, time.Since(t0))
					ok.Add(1)
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			}()
		}
		cpu0, _ := processCPU()
		start, stop = time.Now(), time.Now().Add(*loadDuration)
		close(warmup)
		wg.Wait()
		elapsed := time.Since(start)
		cpu1, cpuOK := processCPU()
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
		if cpuOK {
			// Server and load generator together, whatever else the
			// machine runs: the cost that bounds req/s on these cores.
			b.ReportMetric(float64((cpu1-cpu0).Microseconds())/float64(max(1, ok.Load())), "cpu-us/req")
		}
		b.ReportMetric(float64(s.m.samples.Load())/float64(max(1, s.batches.Load()+s.batch.calls.Load())), "rows/batch")
		if n := errs.Load(); n > 0 {
			b.Errorf("%d requests failed; first: %v", n, first.Load())
		}
	}
}

// tensorBody is the binary tensor body of rows.
func tensorBody(rows ...[]float32) []byte {
	var b []byte
	for _, r := range rows {
		for _, v := range r {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
		}
	}
	return b
}

// rawRequest is a whole HTTP/1.1 POST request to host.
func rawRequest(host, path, contentType string, body []byte) []byte {
	head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n", path, host, contentType, len(body))
	return append([]byte(head), body...)
}

// loadConn is one keep-alive HTTP/1.1 connection of the load generator:
// it writes a prepared request in one write and reads the answer's head
// and body, no more.
type loadConn struct {
	conn net.Conn
	br   *bufio.Reader
}

func dialLoad(addr string, life time.Duration) (*loadConn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	if err := c.SetDeadline(time.Now().Add(life)); err != nil {
		c.Close()
		return nil, err
	}
	return &loadConn{conn: c, br: bufio.NewReaderSize(c, 4096)}, nil
}

var errNoLength = errors.New("answer without Content-Length")

// do sends req and reads its answer; an answer other than 200 is an
// *httpStatusError.
func (c *loadConn) do(req []byte) error {
	if _, err := c.conn.Write(req); err != nil {
		return err
	}
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		return err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return fmt.Errorf("bad status line %q", line)
	}
	code, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return fmt.Errorf("bad status line %q", line)
	}
	length := -1
	for {
		h, err := c.br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(h) <= 2 {
			break
		}
		const cl = "content-length:"
		if len(h) > len(cl) && bytes.EqualFold(h[:len(cl)], []byte(cl)) {
			length, err = strconv.Atoi(string(bytes.TrimSpace(h[len(cl):])))
			if err != nil {
				return fmt.Errorf("bad header %q", h)
			}
		}
	}
	if length < 0 {
		return errNoLength
	}
	if _, err := c.br.Discard(length); err != nil {
		return err
	}
	if code != http.StatusOK {
		return &httpStatusError{code}
	}
	return nil
}

type httpStatusError struct{ code int }

func (e *httpStatusError) Error() string { return http.StatusText(e.code) }
