package tensor

import (
	"sync"
	"sync/atomic"
)

// gemmJob is one call of Gemm: the problem and the bookkeeping to share it
// among goroutines. Jobs are pooled so the parallel path allocates nothing.
type gemmJob struct {
	p  gemmProblem
	wg sync.WaitGroup

	// C is cut along m (splitM) or n into chunks of whole micro-tiles;
	// goroutines claim chunks by incrementing next.
	next   atomic.Int64
	chunks int
	tiles  int // micro-tiles along the split dimension
	unit   int // mr or nr
	splitM bool
}

var gemmJobPool = sync.Pool{New: func() any { return new(gemmJob) }}

// gemmChunksPerWorker cuts the work finer than one piece per goroutine, so
// a goroutine that the OS schedules late (the cores may be shared with
// other processes) holds up the product by one small chunk, not by half of
// it.
const gemmChunksPerWorker = 4

// gemmHelpers is a set of parked goroutines that join jobs handed to them
// over an unbuffered channel. They are started on first need, never more
// than GOMAXPROCS-1 of them, and live for the life of the process like the
// runtime's own workers; a goroutine spawned per product would cost an
// allocation each time. Like gemmBufPool this is shared infrastructure, not
// state any result depends on.
var gemmHelpers struct {
	mu      sync.Mutex
	started atomic.Int32
	jobs    chan *gemmJob
}

// ensureHelpers starts helpers until n are running.
func ensureHelpers(n int) {
	if int(gemmHelpers.started.Load()) >= n {
		return
	}
	gemmHelpers.mu.Lock()
	defer gemmHelpers.mu.Unlock()
	if gemmHelpers.jobs == nil {
		gemmHelpers.jobs = make(chan *gemmJob)
	}
	for int(gemmHelpers.started.Load()) < n {
		go gemmHelper(gemmHelpers.jobs)
		gemmHelpers.started.Add(1)
	}
}

func gemmHelper(jobs <-chan *gemmJob) {
	for job := range jobs {
		job.work()
		job.wg.Done()
	}
}

// workers returns how many goroutines the product is worth, at most
// maxWorkers, giving each at least minFlops (gemmMinFlopsPerWorker if 0).
func (p *gemmProblem) workers(maxWorkers, minFlops int) int {
	if minFlops <= 0 {
		minFlops = gemmMinFlopsPerWorker
	}
	flops := 2 * p.m * p.n * p.k
	w := min(maxWorkers, flops/minFlops)
	tiles := max(gemmCeilDiv(p.m, p.kern.mr), gemmCeilDiv(p.n, p.kern.nr))
	return max(1, min(w, tiles))
}

// run computes the product. A product worth several goroutines is cut into
// chunks of whole micro-tiles along its longer dimension (in tiles); the
// caller and every idle helper claim chunks until none is left. Each chunk
// packs its own operands, so goroutines share nothing but the read-only
// inputs. Helpers that are busy (with another caller's product) are not
// waited for: the caller then computes more chunks itself. It returns
// the goroutines the product was cut for.
func (job *gemmJob) run(maxWorkers, minFlops int) int {
	p := &job.p
	w := p.workers(maxWorkers, minFlops)
	if w == 1 {
		p.region(0, p.m, 0, p.n)
		return 1
	}
	ensureHelpers(w - 1)
	tilesM, tilesN := gemmCeilDiv(p.m, p.kern.mr), gemmCeilDiv(p.n, p.kern.nr)
	job.splitM = tilesM >= tilesN
	job.tiles, job.unit = tilesN, p.kern.nr
	if job.splitM {
		job.tiles, job.unit = tilesM, p.kern.mr
	}
	job.chunks = min(job.tiles, w*gemmChunksPerWorker)
	job.next.Store(0)
	for range w - 1 {
		job.wg.Add(1)
		select {
		case gemmHelpers.jobs <- job:
		default:
			job.wg.Done()
		}
	}
	job.work()
	job.wg.Wait()
	return w
}

// work computes chunks of the job until none is left.
func (job *gemmJob) work() {
	p := &job.p
	size := p.n
	if job.splitM {
		size = p.m
	}
	for {
		i := int(job.next.Add(1)) - 1
		if i >= job.chunks {
			return
		}
		lo := i * job.tiles / job.chunks * job.unit
		hi := min(size, (i+1)*job.tiles/job.chunks*job.unit)
		if i == job.chunks-1 {
			hi = size
		}
		if job.splitM {
			p.region(lo, hi, 0, p.n)
		} else {
			p.region(0, p.m, lo, hi)
		}
	}
}
