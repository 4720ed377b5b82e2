package agent

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fedge/fedge/tensor"
)

func batchModel(t *testing.T, seed uint64) *tensor.Model {
	t.Helper()
	m, err := tensor.NewModel(tensor.Spec{Input: []int{784}, Layers: []tensor.LayerSpec{
		{Type: tensor.LayerDense, Units: 16}, {Type: tensor.LayerReLU}, {Type: tensor.LayerDense, Units: 10}}}, seed)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestBatcherGathersConcurrentRequests: requests in flight together go
// through one engine call per model, and each gets the probabilities of
// its own rows, even across a model swap.
func TestBatcherGathersConcurrentRequests(t *testing.T) {
	t.Run("one model", func(t *testing.T) { testBatcherGathers(t, 24, 0, 1) })
	t.Run("swap", func(t *testing.T) { testBatcherGathers(t, 2, 2, 2) })
}

// testBatcherGathers runs n requests all in flight at once, every swap-th
// of them (none if 0) on a second model, and wants calls engine calls.
func testBatcherGathers(t *testing.T, n, swap int, calls uint64) {
	m1, m2 := batchModel(t, 1), batchModel(t, 2)
	cur1 := &servedModel{version: 1, model: m1}
	cur2 := &servedModel{version: 2, model: m2}
	b := newBatcher(time.Minute, 64)
	leave := make([]func(), n)
	for i := range leave {
		leave[i] = b.arrive() // all twelve are in the server
	}
	type result struct {
		probs []float32
		err   error
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cur := cur1
			if swap > 0 && i%swap == swap-1 {
				cur = cur2 // a swap in the middle: those rows use model 2
			}
			rows := 1 + i%2
			x := append(input(i), input(i+100)...)[:rows*784]
			p, err := predictCopy(b, cur, x, rows)
			results[i] = result{p, err}
			leave[i]()
		}()
	}
	wg.Wait()
	for i, r := range results {
		if r.err != nil {
			t.Fatalf("request %d: %v", i, r.err)
		}
		m, rows := m1, 1+i%2
		if swap > 0 && i%swap == swap-1 {
			m = m2
		}
		want, err := m.Predict(append(input(i), input(i+100)...)[:rows*784], rows)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.probs) != len(want) {
			t.Fatalf("request %d: %d probabilities, want %d", i, len(r.probs), len(want))
		}
		for j := range want {
			if d := r.probs[j] - want[j]; d > 1e-6 || d < -1e-6 {
				t.Fatalf("request %d value %d: %v, want %v", i, j, r.probs[j], want[j])
			}
		}
	}
	// With a minute's wait and everyone in flight, only the model swap
	// splits batches, never the clock: one batch per run of one model.
	if c := b.calls.Load(); c != calls {
		t.Errorf("%d engine calls for %d concurrent requests, want %d", c, n, calls)
	}
	if b.inflight.Load() != 0 {
		t.Errorf("inflight = %d after every request left", b.inflight.Load())
	}
}

// TestBatcherAloneDoesNotWait: a request with no other in flight is
// predicted at once, however long batch_wait is.
func TestBatcherAloneDoesNotWait(t *testing.T) {
	b := newBatcher(time.Hour, 64)
	cur := &servedModel{version: 1, model: batchModel(t, 1)}
	done := make(chan error, 1)
	go func() {
		leave := b.arrive()
		defer leave()
		_, err := predictCopy(b, cur, input(1), 1)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a lone request waited for a batch")
	}
}

// TestBatcherWaitIsBounded: a batch whose other in-flight request never
// joins runs after batch_wait.
func TestBatcherWaitIsBounded(t *testing.T) {
	b := newBatcher(50*time.Millisecond, 64)
	cur := &servedModel{version: 1, model: batchModel(t, 1)}
	other := b.arrive() // in flight, never predicts (an explanation, a big batch)
	defer other()
	leave := b.arrive()
	defer leave()
	start := time.Now()
	if _, err := predictCopy(b, cur, input(1), 1); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 50*time.Millisecond || d > 20*time.Second {
		t.Errorf("waited %v with batch_wait 50ms and another request in flight", d)
	}
}

// TestPredictBatchedOverHTTP: concurrent single-sample requests through
// the handler each get their own answer, with fewer engine calls than
// requests, and the batcher counts every request out.
func TestPredictBatchedOverHTTP(t *testing.T) {
	s := newInferenceServer(InferenceLimits{BatchWait: Duration(50 * time.Millisecond), MaxRequests: 64}.withDefaults())
	s.served, s.m = new(atomic.Pointer[servedModel]), newMetrics()
	m := batchModel(t, 3)
	serve(s, 7, m)
	srv := httptest.NewServer(s.handler())
	defer srv.Close()
	const n = 32
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, body := post(t, srv.URL, predictBody(input(i)))
			var resp PredictResponse
			if err := json.Unmarshal(body, &resp); code != http.StatusOK || err != nil {
				errs <- errors.New(string(body))
				return
			}
			want, _ := m.Predict(input(i), 1)
			if resp.ModelVersion != 7 || len(resp.Predictions) != 1 || resp.Predictions[0].Class != argmax(want) {
				errs <- errors.New("wrong answer: " + string(body))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := s.m.samples.Load(); got != n {
		t.Errorf("%d samples counted, want %d", got, n)
	}
	if s.batch.calls.Load() == 0 || s.batches.Load() != 0 {
		t.Errorf("%d batched and %d direct engine calls: single samples did not go through the batcher", s.batch.calls.Load(), s.batches.Load())
	}
	if s.batch.inflight.Load() != 0 {
		t.Errorf("inflight = %d after every request was answered", s.batch.inflight.Load())
	}
}

// predictCopy is b.predict returning a copy of the probabilities.
func predictCopy(b *batcher, cur *servedModel, x []float32, n int) ([]float32, error) {
	var out []float32
	var err error
	b.predict(cur, x, n, func(p []float32, e error) { out, err = slices.Clone(p), e })
	return out, err
}
