package sim

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/tensor"
)

// software names the simulator in Hello messages.
const software = "fedge-simulate"

// fleet is what the virtual agents share.
type fleet struct {
	ctx     context.Context
	opts    *Options
	log     *slog.Logger
	data    *tensor.Dataset // the training pool; agents hold indices
	classes int
	models  *modelCache
	dialers []*protocol.Dialer
	pool    chan struct{} // one token per worker
	agents  []*vagent
	// dials bounds the fleet's QUIC handshakes in flight (Options.Handshakes),
	// to the leader and, in sharded rounds, to group coordinators.
	dials chan struct{}

	connected atomic.Int64
	leader    atomic.Pointer[string] // the coordinator that last led, as an agent found
	stats     struct {
		completed, failed  atomic.Int64
		bytesUp, bytesDown atomic.Int64
	}
}

// dialer returns the shared socket agent i dials from.
func (f *fleet) dialer(i int) *protocol.Dialer { return f.dialers[i%len(f.dialers)] }

// leaderHint returns the leader an agent found last, else def.
func (f *fleet) leaderHint(def string) string {
	if p := f.leader.Load(); p != nil {
		return *p
	}
	return def
}

// work runs fn holding a worker of the pool.
func (f *fleet) work(ctx context.Context, fn func() error) error {
	select {
	case f.pool <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-f.pool }()
	return fn()
}

// status is what a virtual agent reports in its heartbeats.
func (f *fleet) status(n int) *protocol.AgentStatus {
	return &protocol.AgentStatus{
		DataKind: f.opts.Dataset.Kind, Features: uint32(f.data.Features()), Classes: uint32(f.classes),
		TrainExamples: uint64(n), Trainer: "engine",
	}
}

// parallel runs fn(i) for i in [0, n) on workers goroutines and returns
// the first error.
func parallel(ctx context.Context, n, workers int, fn func(i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan int)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(i); err != nil {
					once.Do(func() { first = err; cancel() })
				}
			}
		}()
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		return fmt.Errorf("sim: %w", ctx.Err())
	}
	return first
}
