package workpool

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
)

func TestParallel(t *testing.T) {
	var sum atomic.Int64
	seen := make([]atomic.Int32, 100)
	if err := Parallel(context.Background(), 100, 3, func(w, i int) error {
		if w < 0 || w >= 3 {
			t.Errorf("worker %d out of range", w)
		}
		seen[i].Add(1)
		sum.Add(int64(i))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if sum.Load() != 4950 {
		t.Errorf("sum %d, want 4950", sum.Load())
	}
	for i := range seen {
		if seen[i].Load() != 1 {
			t.Fatalf("item %d ran %d times", i, seen[i].Load())
		}
	}
	boom := errors.New("boom")
	if err := Parallel(context.Background(), 100, 2, func(_, i int) error {
		if i == 10 {
			return boom
		}
		return nil
	}); !errors.Is(err, boom) {
		t.Errorf("got %v, want boom", err)
	}
}
