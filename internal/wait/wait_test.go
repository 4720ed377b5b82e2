package wait

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestUntil(t *testing.T) {
	n := 0
	if err := Until(context.Background(), 5*time.Second, func() bool { n++; return n == 3 }); err != nil || n != 3 {
		t.Fatalf("Until: %v after %d calls, want nil after 3", err, n)
	}
	start := time.Now()
	err := Until(context.Background(), 150*time.Millisecond, func() bool { return false })
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("Until of a false condition: %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d < 150*time.Millisecond || d > 5*time.Second {
		t.Fatalf("Until timed out after %v, want about 150ms", d)
	}
}

func TestUntilStopsWithItsContext(t *testing.T) {
	stop := errors.New("stopped")
	ctx, cancel := context.WithCancelCause(context.Background())
	calls := 0
	err := Until(ctx, time.Minute, func() bool {
		if calls++; calls == 2 {
			cancel(stop)
		}
		return false
	})
	if !errors.Is(err, stop) {
		t.Fatalf("Until: %v, want the context's cause", err)
	}
	if calls != 2 {
		t.Fatalf("cond called %d times, want 2 (not after the context ended)", calls)
	}
}

// TestUntilLooksOftenAtAShortWindow: a short wait is looked at often (a
// pause of at most a twentieth of it), a long one at most ten times a
// second. The schedule is checked, not counted against the clock, which a
// loaded machine stretches.
func TestUntilLooksOftenAtAShortWindow(t *testing.T) {
	for _, tc := range []struct{ timeout, most time.Duration }{
		{400 * time.Millisecond, 20 * time.Millisecond},
		{50 * time.Millisecond, 10 * time.Millisecond},
		{time.Minute, 100 * time.Millisecond},
	} {
		first, most := pauses(tc.timeout)
		if first != 10*time.Millisecond || most != tc.most {
			t.Errorf("pauses(%v) = %v, %v; want 10ms, %v", tc.timeout, first, most, tc.most)
		}
	}
}

// TestSleep: Sleep waits its time unless its context ends first.
func TestSleep(t *testing.T) {
	start := time.Now()
	if !Sleep(context.Background(), 20*time.Millisecond) || time.Since(start) < 20*time.Millisecond {
		t.Fatalf("Sleep returned early (%v)", time.Since(start))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start = time.Now()
	if Sleep(ctx, time.Minute) || time.Since(start) > 10*time.Second {
		t.Fatalf("Sleep on an ended context waited %v", time.Since(start))
	}
}
