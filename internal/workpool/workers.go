package workpool

import (
	"context"
	"runtime"
	"sync"
)

// Parallel calls fn(worker, i) for every i in [0, n) on up to workers
// goroutines (GOMAXPROCS when workers <= 0). worker, in [0, workers), lets
// fn use per-worker state such as a model clone. It returns the first error
// and stops handing out work once an error occurs or ctx ends.
func Parallel(ctx context.Context, n, workers int, fn func(worker, i int) error) error {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, n)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan int)
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(w, i); err != nil {
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
		// ctx was cancelled by the caller, not by an error of fn.
		return ctx.Err()
	}
	return first
}
