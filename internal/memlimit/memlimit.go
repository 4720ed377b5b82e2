package memlimit

import (
	"os"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// Headroom is what the limit leaves above the process's use at the first
// reservation plus the reserved bytes: the garbage of transfers (chunk
// buffers) collected at once, never more.
const Headroom = 64 << 20

// MinReserve is the smallest reservation that changes the limit: below
// it, the collection slack is not worth a limit.
const MinReserve = 32 << 20

// the process-wide reservations (the runtime's limit is process-wide).
var state struct {
	mu       sync.Mutex
	count    int   // open reservations that set the limit
	reserved int64 // their bytes
	base     int64 // the process's use at the first, plus Headroom
	prev     int64 // the limit before the first
}

// Reservation is reserved memory; Release it when the vectors it was
// for are dropped.
type Reservation struct {
	n    int64
	once sync.Once
}

// Reserve announces that the process is about to hold n more bytes of
// live data and bounds the heap's slack above it (see the package doc).
// A reservation under MinReserve, or when the operator set GOMEMLIMIT,
// changes nothing. Release the result (a nil-safe no-op then).
func Reserve(n int64) *Reservation {
	if n < MinReserve || os.Getenv("GOMEMLIMIT") != "" {
		return nil
	}
	state.mu.Lock()
	defer state.mu.Unlock()
	if state.count == 0 {
		state.prev = debug.SetMemoryLimit(-1)
		state.base = InUse() + Headroom
	}
	state.count++
	state.reserved += n
	debug.SetMemoryLimit(min(state.base+state.reserved, state.prev))
	return &Reservation{n: n}
}

// Release ends the reservation; the last one restores the limit and
// returns the freed memory to the operating system. Releasing twice, or
// a nil reservation, does nothing.
func (r *Reservation) Release() {
	if r == nil {
		return
	}
	r.once.Do(func() {
		state.mu.Lock()
		state.count--
		state.reserved -= r.n
		last := state.count == 0
		if last {
			debug.SetMemoryLimit(state.prev)
		} else {
			debug.SetMemoryLimit(min(state.base+state.reserved, state.prev))
		}
		state.mu.Unlock()
		if last {
			debug.FreeOSMemory()
		}
	})
}

// Limit returns the runtime's memory limit now (math.MaxInt64: none).
func Limit() int64 { return debug.SetMemoryLimit(-1) }

// InUse is the memory the runtime's limit counts: all the Go runtime
// mapped, less the heap pages it returned to the operating system.
func InUse() int64 {
	s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 || s[1].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return int64(s[0].Value.Uint64() - s[1].Value.Uint64())
}
