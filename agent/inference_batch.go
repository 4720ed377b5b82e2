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
	// rowBufs and probBufs are batches' input and output buffers,
	// reused.
	rowBufs, probBufs sync.Pool
}

// batch is one engine call's worth of requests, all for the same model.
type batch struct {
	cur  *servedModel
	x    []float32 // the rows, packed
	rows int
	// joined counts the requests in the batch.
	joined int
	// ready is closed when the batch should stop waiting for more rows.
	ready     chan struct{}
	readyOnce sync.Once
	// done is closed when every request has its result.
	done chan struct{}
	err  error
	// probs are every row's probabilities; pending counts the requests
	// still using them, the last one returns them to the pool.
	probs   *[]float32
	pending atomic.Int32
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
			if b.open != nil && int64(b.open.joined) >= n {
				b.open.close() // everyone left has joined
			}
			b.mu.Unlock()
		})
	}
}

func (bt *batch) close() { bt.readyOnce.Do(func() { close(bt.ready) }) }

// predict computes the class probabilities of the n rows x (n × the
// model's features) from cur, in a batch with other requests' rows, and
// calls use with them (or the engine's error); the probabilities are
// valid only during use.
func (b *batcher) predict(cur *servedModel, x []float32, n int, use func(probs []float32, err error)) {
	c := cur.model.Classes()
	f := cur.model.Features()
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
	bt.joined++
	bt.x = append(bt.x, x[:n*f]...)
	row := bt.rows
	bt.rows += n
	if bt.rows >= b.maxRows {
		bt.close()
		b.open = nil
	} else if int64(bt.joined) >= b.inflight.Load() {
		bt.close()
	}
	b.mu.Unlock()
	if lead {
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
		bt.probs = getBuf[float32](&b.probBufs)
		if k := bt.rows * c; cap(*bt.probs) < k {
			*bt.probs = make([]float32, k)
		}
		*bt.probs = (*bt.probs)[:bt.rows*c]
		bt.err = cur.predictInto(*bt.probs, bt.x, bt.rows)
		putBuf(&b.rowBufs, &bt.x)
		bt.pending.Store(int32(bt.joined))
		close(bt.done)
	} else {
		<-bt.done
	}
	use((*bt.probs)[row*c:(row+n)*c:(row+n)*c], bt.err)
	if bt.pending.Add(-1) == 0 {
		putBuf(&b.probBufs, bt.probs)
	}
}
