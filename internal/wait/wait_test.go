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

// TestUntilLooksOftenAtAShortWindow: a 400 ms wait asks at least ten times.
func TestUntilLooksOftenAtAShortWindow(t *testing.T) {
	calls := 0
	_ = Until(context.Background(), 400*time.Millisecond, func() bool { calls++; return false })
	if calls < 10 {
		t.Fatalf("cond called %d times in 400ms, want at least 10", calls)
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
