package memlimit

import (
	"math"
	"runtime"
	"testing"
)

// TestReserve checks the limit a reservation sets (the process's use,
// plus the headroom, plus the reserved bytes), that reservations add up,
// that the last release restores no limit, and that small reservations
// and an operator's GOMEMLIMIT leave the limit alone. (That the runtime
// collects before its limit is the runtime's contract; the bound it
// gives a round is measured by scripts/bigmodel-bench.)
func TestReserve(t *testing.T) {
	if Limit() != math.MaxInt64 {
		t.Fatalf("a limit is set before the test: %d", Limit())
	}
	t.Setenv("GOMEMLIMIT", "")
	const n = 128 << 20
	runtime.GC()
	use := InUse()
	r := Reserve(n)
	limit := Limit()
	if limit < use+Headroom+n || limit > use+Headroom+n+8<<20 {
		t.Fatalf("limit %d MiB, want the %d MiB in use + headroom + %d MiB", limit>>20, use>>20, n>>20)
	}
	r2 := Reserve(n)
	if Limit() != limit+n {
		t.Fatalf("a second reservation set %d, want %d", Limit(), limit+n)
	}
	r2.Release()
	r2.Release()
	if Limit() != limit {
		t.Fatalf("after releasing the second: %d, want %d", Limit(), limit)
	}
	r.Release()
	if Limit() != math.MaxInt64 {
		t.Fatalf("the last release left a limit of %d", Limit())
	}
	if Reserve(MinReserve-1) != nil || Limit() != math.MaxInt64 {
		t.Fatal("a small reservation set a limit")
	}
	t.Setenv("GOMEMLIMIT", "1GiB")
	if Reserve(n) != nil || Limit() != math.MaxInt64 {
		t.Fatal("a reservation overrode the operator's GOMEMLIMIT")
	}
}
