package agent

import (
	"sync"
	"sync/atomic"
	"time"
)

// batcher gathers the rows of small predict requests that arrive together
// into one engine call, so the model's GEMM multiplies a matrix instead of
// one vector per request. It runs no goroutine of its own: the first
// request of a batch leads it — it waits until the batch holds maxRows
// rows, or every predict request in the server has joined it, or wait has
// passed, whichever comes first — then predicts every row and hands each
// request its probabilities. A request alone in the server never waits;
// under load a batch waits at most wait, while the requests in flight
// (being read, decoded, or answered from the batch before) come round.
type batcher struct {
	wait    time.Duration
	maxRows int
	// inflight counts the predict requests in the server, from the
	// handler's start to its end.
	inflight atomic.Int64
	// calls counts the engine calls made for batches.
	calls atomic.Uint64

	mu   sync.Mutex
	open *batch // the batch taking rows, if any
	// rows are batches' input buffers, reused.
	rowBufs sync.Pool
}

// batch is one engine call's worth of requests, all for the same model.
type batch struct {
	cur   *servedModel
	x     []float32 // the rows, packed
	rows  int
	items []*batchItem
	// ready is closed when the batch should stop waiting for more rows.
	ready     chan struct{}
	readyOnce sync.Once
	// done is closed when every item has its result.
	done chan struct{}
	err  error
}

// batchItem is one request's share of a batch.
type batchItem struct {
	row, rows int       // its first row in the batch, and how many
	probs     []float32 // its rows' probabilities, once done
}

func newBatcher(wait time.Duration, maxRows int) *batcher {
	return &batcher{wait: wait, maxRows: maxRows}
}

// accepts reports whether a request of n rows goes through the batcher
// (bigger ones already give the GEMM a matrix).
func (b *batcher) accepts(n int) bool { return b != nil && b.maxRows > 1 && n < b.maxRows }

// arrive counts a predict request in the server; the returned function,
// called once when the request is answered, counts it out.
func (b *batcher) arrive() func() {
	if b == nil {
		return func() {}
	}
	b.inflight.Add(1)
	var once sync.Once
	return func() {
		once.Do(func() {
			n := b.inflight.Add(-1)
			b.mu.Lock()
			if b.open != nil && int64(len(b.open.items)) >= n {
				b.open.close() // everyone left has joined
			}
			b.mu.Unlock()
		})
	}
}

func (bt *batch) close() { bt.readyOnce.Do(func() { close(bt.ready) }) }

// predict returns the class probabilities of the n rows x (n × the
// model's features) from cur, computed in a batch with other requests'
// rows.
func (b *batcher) predict(cur *servedModel, x []float32, n int) ([]float32, error) {
	f, c := cur.model.Features(), cur.model.Classes()
	b.mu.Lock()
	bt := b.open
	lead := bt == nil || bt.cur != cur || bt.rows+n > b.maxRows
	if lead {
		if bt != nil {
			bt.close() // a different model, or full: let it run
		}
		bt = &batch{cur: cur, x: (*getBuf[float32](&b.rowBufs))[:0], ready: make(chan struct{}), done: make(chan struct{})}
		b.open = bt
	}
	it := &batchItem{row: bt.rows, rows: n}
	bt.items = append(bt.items, it)
	bt.x = append(bt.x, x[:n*f]...)
	bt.rows += n
	if bt.rows >= b.maxRows {
		bt.close()
		b.open = nil
	} else if int64(len(bt.items)) >= b.inflight.Load() {
		bt.close()
	}
	b.mu.Unlock()
	if !lead {
		<-bt.done
		return it.probs, bt.err
	}
	t := time.NewTimer(b.wait)
	select {
	case <-bt.ready: // at once if everyone in flight has joined
	case <-t.C:
	}
	t.Stop()
	b.mu.Lock()
	if b.open == bt {
		b.open = nil // no more rows join: bt is the leader's alone now
	}
	b.mu.Unlock()
	b.calls.Add(1)
	probs := make([]float32, bt.rows*c)
	bt.err = cur.predictInto(probs, bt.x, bt.rows)
	putBuf(&b.rowBufs, &bt.x)
	for _, o := range bt.items {
		o.probs = probs[o.row*c : (o.row+o.rows)*c : (o.row+o.rows)*c]
	}
	close(bt.done)
	return it.probs, bt.err
}
