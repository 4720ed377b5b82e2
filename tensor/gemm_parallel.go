package tensor

import (
	"sync"
	"sync/atomic"
)

// gemmJob is one call of Gemm: the problem and the bookkeeping to split it
// over goroutines. Jobs are pooled so the parallel path allocates nothing.
type gemmJob struct {
	p     gemmProblem
	wg    sync.WaitGroup
	tasks []gemmTask
}

// gemmTask is the part of a job one goroutine computes: rows [i0,i1) ×
// columns [j0,j1) of C.
type gemmTask struct {
	job            *gemmJob
	i0, i1, j0, j1 int
}

var gemmJobPool = sync.Pool{New: func() any { return new(gemmJob) }}

// gemmHelpers is a set of parked goroutines that compute tasks handed to
// them over an unbuffered channel. They are started on first need, never
// more than GOMAXPROCS-1 of them, and live for the life of the process like
// the runtime's own workers; a goroutine spawned per product would cost an
// allocation each time. Like gemmBufPool this is shared infrastructure, not
// state any result depends on.
var gemmHelpers struct {
	mu      sync.Mutex
	started atomic.Int32
	tasks   chan *gemmTask
}

// ensureHelpers starts helpers until n are running.
func ensureHelpers(n int) {
	if int(gemmHelpers.started.Load()) >= n {
		return
	}
	gemmHelpers.mu.Lock()
	defer gemmHelpers.mu.Unlock()
	if gemmHelpers.tasks == nil {
		gemmHelpers.tasks = make(chan *gemmTask)
	}
	for int(gemmHelpers.started.Load()) < n {
		go gemmHelper(gemmHelpers.tasks)
		gemmHelpers.started.Add(1)
	}
}

func gemmHelper(tasks <-chan *gemmTask) {
	for t := range tasks {
		t.job.p.region(t.i0, t.i1, t.j0, t.j1)
		t.job.wg.Done()
	}
}

// workers returns how many goroutines the product is worth, at most max.
func (p *gemmProblem) workers(maxWorkers int) int {
	flops := 2 * p.m * p.n * p.k
	w := min(maxWorkers, flops/gemmMinFlopsPerWorker)
	tiles := max(ceilDiv(p.m, p.kern.mr), ceilDiv(p.n, p.kern.nr))
	return max(1, min(w, tiles))
}

// run computes the product, splitting C into disjoint row or column ranges
// of whole micro-tiles, one per worker. Each worker packs its own operands,
// so they share nothing but the read-only inputs. A task no idle helper is
// ready to take runs on the calling goroutine, so concurrent callers never
// wait for one another.
func (job *gemmJob) run(maxWorkers int) {
	p := &job.p
	w := p.workers(maxWorkers)
	if w == 1 {
		p.region(0, p.m, 0, p.n)
		return
	}
	ensureHelpers(w - 1)
	mr, nr := p.kern.mr, p.kern.nr
	tilesM, tilesN := ceilDiv(p.m, mr), ceilDiv(p.n, nr)
	splitM := tilesM >= tilesN
	tiles, unit, size := tilesN, nr, p.n
	if splitM {
		tiles, unit, size = tilesM, mr, p.m
	}
	if cap(job.tasks) < w {
		job.tasks = make([]gemmTask, w)
	}
	job.tasks = job.tasks[:w]
	lo := 0
	for i := range w {
		hi := min(size, (i+1)*tiles/w*unit)
		if i == w-1 {
			hi = size
		}
		t := &job.tasks[i]
		*t = gemmTask{job: job, i0: 0, i1: p.m, j0: lo, j1: hi}
		if splitM {
			*t = gemmTask{job: job, i0: lo, i1: hi, j0: 0, j1: p.n}
		}
		lo = hi
	}
	// Hand all but the first task to helpers, then compute the first here.
	for i := 1; i < w; i++ {
		t := &job.tasks[i]
		job.wg.Add(1)
		select {
		case gemmHelpers.tasks <- t:
		default:
			p.region(t.i0, t.i1, t.j0, t.j1)
			job.wg.Done()
		}
	}
	t := &job.tasks[0]
	p.region(t.i0, t.i1, t.j0, t.j1)
	job.wg.Wait()
	clear(job.tasks)
}
